with items as (
    select order_id,
        count(*) as item_count,
        sum(case when product_type = 'jaffle' then 1 else 0 end) as jaffle_count
    from {{ ref('int_order_items_priced') }}
    group by order_id
)
select orders.order_id, orders.customer_id, orders.ordered_at, orders.subtotal,
    items.item_count, items.jaffle_count
from {{ ref('stg_orders') }} as orders
left join items using (order_id)
