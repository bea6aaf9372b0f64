with

deals as (
    select * from {{ ref('int_deals__enriched') }}
),

final as (
    select
        deal_id,
        company_id,
        owner_contact_id,
        deal_name,
        stage,
        is_closed,
        is_won,
        created_date,
        close_date,
        days_to_close,
        currency,
        amount,
        fx_date,
        reporting_currency,
        rate_to_reporting,
        is_fx_rate_filled,
        cast(amount_reporting as numeric(18, 2)) as amount_reporting,
        company_name,
        country_code,
        industry,
        owner_name
    from deals
)

select * from final
