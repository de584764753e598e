"""The MLflow side of promotion: find a registered version, read its run, move aliases."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


@dataclass(frozen=True)
class Candidate:
    """A registered model version and what its training run recorded."""

    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(
    client: MlflowClient, name: str, version: str | None = None, alias: str | None = None
) -> Candidate:
    """The version asked for (by number or alias), else the newest registered one."""
    if version is not None:
        model_version = client.get_model_version(name, version)
    elif alias is not None:
        model_version = client.get_model_version_by_alias(name, alias)
    else:
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise LookupError(f"no registered versions of {name!r}; train first")
        model_version = max(versions, key=lambda v: int(v.version))
    run_id = model_version.run_id
    if run_id is None:
        raise LookupError(f"{name} version {model_version.version} has no training run")
    run = client.get_run(run_id)
    return Candidate(
        name=name,
        version=str(model_version.version),
        run_id=run_id,
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


def current_alias(client: MlflowClient, name: str, alias: str) -> Candidate | None:
    try:
        return resolve(client, name, alias=alias)
    except MlflowException:
        return None
