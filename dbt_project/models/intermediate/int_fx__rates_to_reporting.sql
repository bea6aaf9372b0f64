{%- set reporting_currency = var('reporting_currency', 'USD') | upper -%}
-- Factor that turns an amount in `from_currency` into the reporting currency on a day:
-- amount / (currency per EUR) * (reporting currency per EUR).
with

daily_rates as (
    select * from {{ ref('int_fx__daily_rates') }}
),

reporting_rates as (
    select
        rate_date,
        rate as reporting_rate,
        is_filled as reporting_is_filled
    from daily_rates
    where currency = '{{ reporting_currency }}'
),

converted as (
    select
        daily_rates.currency || ':' || cast(daily_rates.rate_date as varchar) as rate_key,
        daily_rates.rate_date,
        daily_rates.currency as from_currency,
        cast('{{ reporting_currency }}' as varchar) as to_currency,
        reporting_rates.reporting_rate / daily_rates.rate as rate_to_reporting,
        daily_rates.is_filled or reporting_rates.reporting_is_filled as is_filled
    from daily_rates
    inner join reporting_rates
        on daily_rates.rate_date = reporting_rates.rate_date
)

select * from converted
