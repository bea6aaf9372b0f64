with

source as (
    select * from {{ source('crm', 'companies') }}
),

renamed as (
    select
        cast(company_id as integer) as company_id,
        trim(company_name) as company_name,
        upper(trim(country)) as country_code,
        lower(trim(industry)) as industry,
        cast(created_at as timestamp) as created_at,
        cast(loaded_at as timestamp) as loaded_at
    from source
)

select * from renamed
