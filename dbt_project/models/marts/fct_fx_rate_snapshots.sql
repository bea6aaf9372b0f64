{{
    config(
        materialized='incremental',
        incremental_strategy='append',
    )
}}
-- Append-only history: every build appends the latest published rate per currency as that
-- build saw it (one row per currency), stamped with dbt's invocation_id. A --full-refresh
-- rebuild starts the history over, so the row count tells a full refresh from an
-- incremental run: that is what makes a recovered weekly_full_refresh checkable.
with

published as (
    select
        rate_date,
        quote_currency as currency,
        rate
    from {{ ref('stg_fx__exchange_rates') }}
    where base_currency = 'EUR'
),

ranked as (
    select
        *,
        row_number() over (partition by currency order by rate_date desc) as recency
    from published
),

final as (
    select
        cast('{{ invocation_id }}' as varchar) as invocation_id,
        currency,
        rate_date as latest_rate_date,
        rate as latest_rate
    from ranked
    where recency = 1
)

select * from final
