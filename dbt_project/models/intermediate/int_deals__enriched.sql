-- Converted deals with the company and the owning contact attached: the fan-in that the
-- revenue marts read from.
with

deals as (
    select * from {{ ref('int_deals__converted') }}
),

companies as (
    select * from {{ ref('stg_crm__companies') }}
),

owners as (
    select * from {{ ref('stg_crm__contacts') }}
),

enriched as (
    select
        deals.*,
        companies.company_name,
        companies.country_code,
        companies.industry,
        owners.full_name as owner_name,
        owners.email as owner_email,
        case
            when deals.close_date is not null
                then deals.close_date - deals.created_date
        end as days_to_close
    from deals
    left join companies
        on deals.company_id = companies.company_id
    left join owners
        on deals.owner_contact_id = owners.contact_id
)

select * from enriched
