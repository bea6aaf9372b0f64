-- Deals with their amount in the reporting currency. Closed deals convert at the close
-- date's rate, open deals at the creation date's rate. A left join keeps deals without a
-- rate visible (amount_reporting null) so the not_null test reports them.
with

deals as (
    select * from {{ ref('stg_crm__deals') }}
),

rates as (
    select * from {{ ref('int_fx__rates_to_reporting') }}
),

dated as (
    select
        *,
        coalesce(close_date, created_date) as fx_date
    from deals
),

converted as (
    select
        dated.deal_id,
        dated.company_id,
        dated.owner_contact_id,
        dated.deal_name,
        dated.stage,
        dated.is_closed,
        dated.is_won,
        dated.created_date,
        dated.close_date,
        dated.fx_date,
        dated.currency,
        dated.amount,
        rates.to_currency as reporting_currency,
        rates.rate_to_reporting,
        rates.is_filled as is_fx_rate_filled,
        dated.amount * rates.rate_to_reporting as amount_reporting
    from dated
    left join rates
        on dated.currency = rates.from_currency
        and dated.fx_date = rates.rate_date
)

select * from converted
