"""Python assets downstream of the dbt marts."""
