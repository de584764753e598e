"""Training against a shared tracking server refuses an artifact folder on this machine, before
it trains or touches the server (the registry would hold paths no other machine can read)."""

from __future__ import annotations

import pytest

from model_artifact.settings import RegistrySettings
from training.train import ensure_experiment


@pytest.mark.parametrize("location", ["/srv/mlartifacts", "file:///srv/mlartifacts"])
def test_local_artifact_location_with_a_tracking_server_is_refused(location):
    settings = RegistrySettings().model_copy(
        update={
            # port 9 (discard): nothing answers, so reaching the server would fail differently
            "mlflow_tracking_uri": "http://127.0.0.1:9",
            "mlflow_artifact_location": location,
        }
    )
    with pytest.raises(ValueError, match="is local to this machine but the tracking server"):
        ensure_experiment(settings)
