-- Which currency/day pairs had a published rate and which were filled from an earlier
-- day, and how stale a filled rate was.
with

daily_rates as (
    select * from {{ ref('int_fx__daily_rates') }}
),

final as (
    select
        daily_rate_key,
        rate_date,
        currency,
        case when is_filled then 'filled' else 'published' end as coverage_status,
        source_rate_date,
        rate_date - source_rate_date as days_since_published,
        rate
    from daily_rates
)

select * from final
