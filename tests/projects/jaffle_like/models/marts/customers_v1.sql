select customers.customer_id, customers.customer_name, count(orders.order_id) as order_count
from {{ ref('stg_customers') }} as customers
left join {{ ref('orders') }} as orders using (customer_id)
group by 1, 2
