with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

companies as (
    select * from {{ ref('stg_crm__companies') }}
),

final as (
    select
        contacts.contact_id,
        contacts.company_id,
        companies.company_name,
        contacts.full_name,
        contacts.email,
        contacts.contact_role,
        contacts.is_deal_owner
    from contacts
    left join companies
        on contacts.company_id = companies.company_id
)

select * from final
