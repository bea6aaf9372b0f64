-- Companies with contact counts. Reads only CRM staging, so it (and dim_companies) keeps
-- building when anything on the FX or deal side fails.
with

companies as (
    select * from {{ ref('stg_crm__companies') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

contact_counts as (
    select
        company_id,
        count(*) as contact_count,
        sum(case when is_deal_owner then 1 else 0 end) as deal_owner_count
    from contacts
    group by company_id
),

enriched as (
    select
        companies.company_id,
        companies.company_name,
        companies.country_code,
        companies.industry,
        companies.created_at,
        coalesce(contact_counts.contact_count, 0) as contact_count,
        coalesce(contact_counts.deal_owner_count, 0) as deal_owner_count
    from companies
    left join contact_counts
        on companies.company_id = contact_counts.company_id
)

select * from enriched
