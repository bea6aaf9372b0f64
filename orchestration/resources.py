"""Resources shared by assets, sensors and ops: the artifact store and the IO manager."""

from __future__ import annotations

from dagster import ConfigurableResource, FilesystemIOManager, IOManagerDefinition
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from orchestration.artifacts.store import ArtifactStore, open_store, parse_s3_uri
from orchestration.settings import Settings


class ArtifactStoreResource(ConfigurableResource):
    """Where every dbt invocation's artifacts go (``ORCHESTRATION_ARTIFACTS_URI``)."""

    uri: str

    def open(self) -> ArtifactStore:
        return open_store(self.uri)


def build_io_manager(settings: Settings) -> IOManagerDefinition | S3PickleIOManager:
    """Python asset outputs next to the artifacts: S3 when the store is S3, a folder otherwise."""
    if settings.artifacts_on_s3:
        bucket, prefix = parse_s3_uri(settings.artifacts_uri)
        return S3PickleIOManager(
            s3_resource=S3Resource(),
            s3_bucket=bucket,
            s3_prefix=f"{prefix}/io" if prefix else "io",
        )
    return FilesystemIOManager(base_dir=str(settings.duckdb_path.parent / "io"))
