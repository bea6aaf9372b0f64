select order_id from {{ ref('orders') }} where item_count is null or item_count = 0
