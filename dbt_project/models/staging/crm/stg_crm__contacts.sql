with

source as (
    select * from {{ source('crm', 'contacts') }}
),

renamed as (
    select
        cast(contact_id as integer) as contact_id,
        cast(company_id as integer) as company_id,
        trim(full_name) as full_name,
        lower(trim(email)) as email,
        lower(trim(role)) as contact_role,
        coalesce(is_deal_owner, false) as is_deal_owner,
        cast(loaded_at as timestamp) as loaded_at
    from source
)

select * from renamed
