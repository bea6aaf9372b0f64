"""The embedded Dagster instance: its default configuration and its SQLite event log."""
