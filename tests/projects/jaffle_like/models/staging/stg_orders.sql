with source as (
    select * from {{ source('ecom', 'raw_orders') }}
)
select
    id as order_id,
    customer as customer_id,
    cast(ordered_at as date) as ordered_at,
    {{ tiny_utils.cents_to_dollars('subtotal') }} as subtotal
from source
