with

companies as (
    select * from {{ ref('int_companies__enriched') }}
),

final as (
    select
        company_id,
        company_name,
        country_code,
        industry,
        created_at,
        contact_count,
        deal_owner_count,
        deal_owner_count > 0 as has_deal_owner
    from companies
)

select * from final
