with

source as (
    select * from {{ source('fx', 'exchange_rates') }}
),

renamed as (
    select
        cast(rate_date as date) as rate_date,
        upper(trim(base_currency)) as base_currency,
        upper(trim(quote_currency)) as quote_currency,
        cast(rate as double precision) as rate,
        cast(loaded_at as timestamp) as loaded_at
    from source
)

select * from renamed
