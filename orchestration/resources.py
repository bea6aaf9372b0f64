"""Resources shared by assets, sensors and ops: the artifact store and the IO manager."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, FilesystemIOManager

from orchestration.artifacts.store import ArtifactStore, open_store, parse_s3_uri
from orchestration.settings import Settings


class ArtifactStoreResource(ConfigurableResource):
    """Where every dbt invocation's artifacts go (``ORCHESTRATION_ARTIFACTS_URI``)."""

    uri: str

    def open(self) -> ArtifactStore:
        return open_store(self.uri)


def build_io_manager(settings: Settings) -> Any:
    """Python asset outputs next to the artifacts: S3 when the store is S3, a folder otherwise.

    dagster-aws (and boto3) are imported only for S3: ~1 s and ~46 MB at every code load.
    """
    if settings.artifacts_on_s3:
        from dagster_aws.s3 import S3PickleIOManager, S3Resource

        bucket, prefix = parse_s3_uri(settings.artifacts_uri)
        return S3PickleIOManager(
            s3_resource=S3Resource(),
            s3_bucket=bucket,
            s3_prefix=f"{prefix}/io" if prefix else "io",
        )
    return FilesystemIOManager(base_dir=str(settings.duckdb_path.parent / "io"))
