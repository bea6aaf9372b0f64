-- Every company (from int_companies__enriched, so companies without deals appear with
-- zeros) with its won revenue and open pipeline.
with

companies as (
    select * from {{ ref('int_companies__enriched') }}
),

deals as (
    select * from {{ ref('int_deals__enriched') }}
),

by_company as (
    select
        company_id,
        count(*) as deal_count,
        sum(case when is_won then 1 else 0 end) as won_deal_count,
        sum(case when is_won then amount_reporting else 0 end) as won_revenue_reporting,
        sum(case when not is_closed then amount_reporting else 0 end) as open_pipeline_reporting,
        max(close_date) as last_close_date
    from deals
    group by company_id
),

final as (
    select
        companies.company_id,
        companies.company_name,
        companies.country_code,
        companies.industry,
        coalesce(by_company.deal_count, 0) as deal_count,
        coalesce(by_company.won_deal_count, 0) as won_deal_count,
        cast(coalesce(by_company.won_revenue_reporting, 0) as numeric(18, 2))
            as won_revenue_reporting,
        cast(coalesce(by_company.open_pipeline_reporting, 0) as numeric(18, 2))
            as open_pipeline_reporting,
        by_company.last_close_date
    from companies
    left join by_company
        on companies.company_id = by_company.company_id
)

select * from final
