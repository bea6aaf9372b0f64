"""What Dagster recorded and the artifact store hold, as recovery's plain data."""
