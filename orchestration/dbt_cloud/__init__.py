"""dbt Cloud as the place dbt runs: the same assets, checks and recovery as local dbt Core.

dagster-dbt's dbt Cloud v2 integration does the work (``DbtCloudWorkspace`` loads the
manifest, ``dbt_cloud_assets`` the assets, its client triggers and polls runs and fetches
artifacts). This package adds what it lacks: a recovery-aware op body, the artifact store,
and the job *rerun* endpoint (``rerun.py``).
"""
