with

deals as (
    select * from {{ ref('int_deals__enriched') }}
),

by_owner as (
    select
        owner_contact_id,
        max(owner_name) as owner_name,
        max(reporting_currency) as reporting_currency,
        count(*) as deal_count,
        sum(case when is_won then 1 else 0 end) as won_deal_count,
        sum(case when is_closed then 1 else 0 end) as closed_deal_count,
        sum(case when is_won then amount_reporting else 0 end) as won_revenue_reporting,
        sum(case when not is_closed then amount_reporting else 0 end) as open_pipeline_reporting
    from deals
    group by owner_contact_id
),

final as (
    select
        owner_contact_id,
        owner_name,
        reporting_currency,
        deal_count,
        won_deal_count,
        closed_deal_count,
        case
            when closed_deal_count > 0
                then cast(won_deal_count as double precision) / closed_deal_count
        end as win_rate,
        cast(won_revenue_reporting as numeric(18, 2)) as won_revenue_reporting,
        cast(open_pipeline_reporting as numeric(18, 2)) as open_pipeline_reporting
    from by_owner
)

select * from final
