select * from {{ ref('customers') }} order by order_count desc
