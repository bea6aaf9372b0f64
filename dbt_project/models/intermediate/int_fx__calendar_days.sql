-- One row per day from the first to the last FX rate date, gaps included. A recursive CTE
-- keeps this portable (DuckDB and PostgreSQL) without a date-spine package.
with recursive

rate_bounds as (
    select
        min(rate_date) as first_date,
        max(rate_date) as last_date
    from {{ ref('stg_fx__exchange_rates') }}
),

calendar as (
    select
        first_date as calendar_date,
        last_date
    from rate_bounds
    where first_date is not null

    union all

    select
        cast(calendar_date + interval '1 day' as date) as calendar_date,
        last_date
    from calendar
    where calendar_date < last_date
)

select calendar_date from calendar
