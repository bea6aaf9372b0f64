{%- set reporting_currency = var('reporting_currency', 'USD') | upper -%}
-- Won revenue per close day in the reporting currency, one row per calendar day (days
-- without wins show zero), with a running total.
with

calendar as (
    select calendar_date from {{ ref('int_fx__calendar_days') }}
),

won_deals as (
    select * from {{ ref('int_deals__converted') }}
    where is_won
),

daily as (
    select
        close_date,
        count(*) as won_deal_count,
        sum(amount_reporting) as revenue_reporting
    from won_deals
    group by close_date
),

filled as (
    select
        calendar.calendar_date as revenue_date,
        coalesce(daily.won_deal_count, 0) as won_deal_count,
        coalesce(daily.revenue_reporting, 0) as revenue_reporting
    from calendar
    left join daily
        on calendar.calendar_date = daily.close_date
),

final as (
    select
        revenue_date,
        cast('{{ reporting_currency }}' as varchar) as reporting_currency,
        won_deal_count,
        cast(revenue_reporting as numeric(18, 2)) as revenue_reporting,
        cast(
            sum(revenue_reporting) over (
                order by revenue_date
                rows between unbounded preceding and current row
            ) as numeric(18, 2)
        ) as cumulative_revenue_reporting
    from filled
)

select * from final
