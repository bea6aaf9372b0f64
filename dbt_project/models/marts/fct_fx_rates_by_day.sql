{{
    config(
        materialized='incremental',
        incremental_strategy='microbatch',
        event_time='rate_date',
        batch_size='day',
        begin='2026-08-01',
        concurrent_batches=true,
        unique_key=(none if target.type == 'duckdb' else 'rate_key'),
    )
}}
-- unique_key: dbt-postgres implements microbatch as a merge and requires one; dbt-duckdb
-- (delete+insert on event_time) refuses one.
-- Published EUR-based rates, one microbatch per day (dbt reads only that day of the
-- staging view: it has `event_time: rate_date`). The orchestration passes the ingested
-- window as --event-time-start/--event-time-end (ORCHESTRATION_MICROBATCH_DAYS), so
-- every run rebuilds the days the ingestion rewrote; `begin` only matters for a hand-run
-- `dbt build` on an empty warehouse. Kept to one cheap select: each batch is one query.
with

published as (
    select
        rate_date,
        quote_currency as currency,
        rate
    from {{ ref('stg_fx__exchange_rates') }}
    where base_currency = 'EUR'
),

final as (
    select
        currency || ':' || cast(rate_date as varchar) as rate_key,
        rate_date,
        currency,
        rate,
        1 / rate as rate_to_eur
    from published
)

select * from final
{{ orchestration_batch_fault_guard() }}
