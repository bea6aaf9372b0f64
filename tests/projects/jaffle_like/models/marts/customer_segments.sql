select customer_id,
    case when lifetime_spend >= 15 then 'regular' else 'new' end as segment
from {{ ref('customers', v=2) }}
