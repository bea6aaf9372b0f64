"""``retry_failed_assets_sensor``: read the tick's state, decide per failure chain, request runs."""
