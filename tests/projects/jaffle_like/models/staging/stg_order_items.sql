select id as order_item_id, order_id, sku from {{ source('ecom', 'raw_items') }}
