-- Gap-filled EUR-based rates: every calendar day for every currency, carrying the last
-- published rate forward over days without one. EUR itself is added with rate 1.
-- The carry-forward uses a running count as group key instead of `ignore nulls`, which
-- PostgreSQL does not support.
with

calendar as (
    select calendar_date from {{ ref('int_fx__calendar_days') }}
),

published as (
    select
        rate_date,
        quote_currency as currency,
        rate
    from {{ ref('stg_fx__exchange_rates') }}
    where base_currency = 'EUR'
),

currencies as (
    select distinct currency from published
),

grid as (
    select
        calendar.calendar_date as rate_date,
        currencies.currency
    from calendar
    cross join currencies
),

joined as (
    select
        grid.rate_date,
        grid.currency,
        published.rate as published_rate,
        published.rate_date as published_date
    from grid
    left join published
        on grid.currency = published.currency
        and grid.rate_date = published.rate_date
),

grouped as (
    select
        *,
        count(published_rate) over (
            partition by currency
            order by rate_date
            rows between unbounded preceding and current row
        ) as fill_group
    from joined
),

filled as (
    select
        rate_date,
        currency,
        max(published_rate) over (partition by currency, fill_group) as rate,
        max(published_date) over (partition by currency, fill_group) as source_rate_date,
        published_rate is not null as is_published
    from grouped
),

euro as (
    select
        calendar_date as rate_date,
        cast('EUR' as varchar) as currency,
        cast(1 as double precision) as rate,
        calendar_date as source_rate_date,
        true as is_published
    from calendar
),

unioned as (
    select * from filled
    union all
    select * from euro
),

final as (
    select
        currency || ':' || cast(rate_date as varchar) as daily_rate_key,
        rate_date,
        currency,
        rate,
        source_rate_date,
        is_published,
        not is_published as is_filled
    from unioned
)

select * from final
