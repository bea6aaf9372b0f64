with

source as (
    select * from {{ source('crm', 'deals') }}
),

renamed as (
    select
        cast(deal_id as integer) as deal_id,
        cast(company_id as integer) as company_id,
        cast(owner_contact_id as integer) as owner_contact_id,
        trim(deal_name) as deal_name,
        cast(amount as double precision) as amount,
        upper(trim(currency)) as currency,
        lower(trim(stage)) as stage,
        cast(created_date as date) as created_date,
        cast(close_date as date) as close_date,
        cast(loaded_at as timestamp) as loaded_at
    from source
),

flagged as (
    select
        *,
        stage in ('closed_won', 'closed_lost') as is_closed,
        stage = 'closed_won' as is_won
    from renamed
)

select * from flagged
