select sku, name as product_name, type as product_type,
    {{ tiny_utils.cents_to_dollars('price') }} as product_price
from {{ source('ecom', 'raw_products') }}
