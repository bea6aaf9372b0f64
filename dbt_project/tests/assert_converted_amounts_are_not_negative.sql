-- Rates are positive, so conversion can never make an amount negative: a row here means
-- a negative raw amount or a broken rate.
select
    deal_id,
    amount,
    rate_to_reporting,
    amount_reporting
from {{ ref('int_deals__converted') }}
where amount_reporting < 0
