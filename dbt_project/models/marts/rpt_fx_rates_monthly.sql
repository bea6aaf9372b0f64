-- Monthly average, low and high of the published rates, per currency: downstream of the
-- microbatch model, so it is re-run after any of its batches is repaired.
with

daily as (
    select * from {{ ref('fct_fx_rates_by_day') }}
),

final as (
    select
        currency || ':' || cast(date_trunc('month', rate_date) as varchar) as monthly_rate_key,
        cast(date_trunc('month', rate_date) as date) as rate_month,
        currency,
        count(*) as published_days,
        avg(rate) as avg_rate,
        min(rate) as min_rate,
        max(rate) as max_rate
    from daily
    group by 1, 2, 3
)

select * from final
