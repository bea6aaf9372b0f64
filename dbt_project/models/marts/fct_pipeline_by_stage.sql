with

deals as (
    select * from {{ ref('int_deals__converted') }}
),

by_stage as (
    select
        stage,
        max(reporting_currency) as reporting_currency,
        count(*) as deal_count,
        sum(amount_reporting) as amount_reporting,
        avg(amount_reporting) as average_amount_reporting
    from deals
    group by stage
),

final as (
    select
        stage,
        case stage
            when 'prospecting' then 1
            when 'qualified' then 2
            when 'proposal' then 3
            when 'negotiation' then 4
            when 'closed_won' then 5
            when 'closed_lost' then 6
        end as stage_order,
        reporting_currency,
        deal_count,
        cast(amount_reporting as numeric(18, 2)) as amount_reporting,
        cast(average_amount_reporting as numeric(18, 2)) as average_amount_reporting
    from by_stage
)

select * from final
