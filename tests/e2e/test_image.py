"""The image users deploy, built by `bentoml containerize` with podman from the test Bento and
run as Kubernetes runs it: a non-root user, a read-only root filesystem, no mount and no
variable it does not need.

- the CPU image carries CPU torch and no CUDA library; the CUDA image a torch built for CUDA;
- `podman run --read-only IMAGE` answers training's held-out applications with training's
  probabilities, the README's two curl examples (tests/e2e/test_readme_examples.py), /readyz,
  /livez, /metrics and /docs.json;
- the prediction log's URL from a Secret (podman's own secrets, as an environment variable):
  SIGTERM under load (`podman stop`, as the kubelet stops a pod) answers what it accepted,
  exits 0 and loses no answered row;
- a runner worker SIGKILLed inside the container ends the container (BentoML does not respawn
  workers in a container) within a bound, so the kubelet restarts it: never a container that
  stays up and unready.

Figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import re
import signal
import time

import bentoml
import numpy as np
import pytest
import requests
from containers import Container, build_image, image_size_bytes, podman, run_python
from fault_load import CLIENTS, GOOD, SHED, Load, assert_log_matches, latency, outcomes
from tests_support import served_answers, serving_env

from credit_risk.decision import DecisionThresholds, decide
from credit_risk.features import raw_columns_from_records
from credit_risk.records import contract_records
from model_artifact.bundle import mlflow_folder, read_bundle

BENTO_UID = 1034  # `bentoml`, the user of BentoML's generated Dockerfile and of the manifests
RUNNER_KILL_BOUND_S = 10.0  # from SIGKILL of the runner worker to the container's exit
LOG_DIR = "/var/lib/credit-risk"  # where the test mounts a volume for the SQLite log

TORCH_REPORT = (
    "import json, torch, importlib.metadata as m; print(json.dumps({'torch': torch.__version__, "
    "'cuda': torch.version.cuda, 'dists': sorted(d.metadata['Name'] for d in m.distributions())}))"
)


def test_the_cpu_image_carries_cpu_torch_and_no_cuda_library(cpu_image):
    found = json.loads(run_python(cpu_image, TORCH_REPORT))
    size_gb = image_size_bytes(cpu_image) / 1e9
    print(f"\ncpu image: torch {found['torch']} (cuda {found['cuda']}), {size_gb:.2f} GB")
    assert found["torch"].endswith("+cpu")
    assert found["cuda"] is None
    # nvidia-ml-py is NVML's pure-Python binding, a dependency of bentoml: no CUDA library
    cuda_libraries = [d for d in found["dists"] if d.lower().startswith("nvidia-")]
    assert set(cuda_libraries) <= {"nvidia-ml-py"}, cuda_libraries
    assert size_gb < 3.5


def test_the_cuda_image_carries_torch_built_for_cuda(container_engine, cuda_bento_tag):
    image = f"localhost/credit-risk-cuda-test:{cuda_bento_tag.split(':')[1]}"
    seconds = build_image(cuda_bento_tag, image, "cuda", serving_env())
    try:
        found = json.loads(run_python(image, TORCH_REPORT))
        size_gb = image_size_bytes(image) / 1e9
        print(
            f"\ncuda image built in {seconds:.0f} s: torch {found['torch']} (cuda {found['cuda']})"
        )
        print(f"  {size_gb:.2f} GB")
        assert found["cuda"], found["torch"]
        assert any(d.lower().startswith("nvidia-cuda-runtime") for d in found["dists"])
    finally:
        podman("rmi", "-f", image, check=False)


def test_the_image_runs_read_only_as_its_non_root_user(image_server):
    state = image_server.inspect()
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert image_server.exec("id", "-u").stdout.strip() == str(BENTO_UID)
    denied = image_server.exec("touch", "/home/bentoml/bento/written")
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    assert not state["Mounts"] or all(m["Type"] == "volume" for m in state["Mounts"])


def test_the_image_answers_held_out_applications_as_training_scored_them(image_server):
    model = requests.get(f"{image_server.url}/model", timeout=10).json()
    bundle = read_bundle(mlflow_folder(bentoml.models.get(model["model_tag"])))
    assert bundle.test_split is not None
    records = bundle.test_split["records"]
    trained = np.asarray(bundle.test_split["probabilities"])
    expected = decide(trained, raw_columns_from_records(records), DecisionThresholds())
    results = served_answers(image_server.url, records)
    served = np.array([r["probability_default"] for r in results])
    np.testing.assert_allclose(served, trained, rtol=0, atol=1e-6)
    assert [r["decision"] for r in results] == [v.decision for v in expected]
    assert model["runner"]["device"] == "cpu"


@pytest.mark.parametrize("path", ["/readyz", "/livez", "/metrics", "/docs.json"])
def test_the_probes_metrics_and_document_answer_in_the_image(image_server, path):
    response = requests.get(f"{image_server.url}{path}", timeout=10)
    assert response.status_code == 200
    if path == "/metrics":
        assert "credit_risk_decisions_total" in response.text
    if path == "/docs.json":
        assert response.json()["openapi"] == "3.0.3"


@pytest.fixture
def log_secret(container_engine, tmp_path):
    """The prediction log's URL as Kubernetes hands it over: a Secret, read as a variable."""
    name = f"credit-risk-log-{tmp_path.name}"
    url = f"sqlite:///{LOG_DIR}/predictions.db"
    secret_file = tmp_path / "url"
    secret_file.write_text(url)
    podman("secret", "create", name, str(secret_file))
    yield name
    podman("secret", "rm", name, check=False)


def test_sigterm_under_load_answers_what_it_accepted_and_loses_no_answered_row(
    cpu_image, log_secret, tmp_path, make_record
):
    volume = tmp_path / "log"
    volume.mkdir()
    volume.chmod(0o777)  # written by the image's user, as an emptyDir or a volume with fsGroup
    secret = f"{log_secret},type=env,target=CREDIT_RISK_PREDICTION_LOG_URL"
    with Container(cpu_image, "--read-only", "--secret", secret, "-v", f"{volume}:{LOG_DIR}") as c:
        c.wait_ready()
        load = Load(f"{c.url}/score", make_record(), "image-stop", honour_retry_after=True)
        load.start_closed()
        try:
            time.sleep(4)
            term_at = load.now()
            exit_code = c.stop(timeout_s=30)
            exited_s = load.now() - term_at
        finally:
            sent = load.stop()
    before = [s for s in sent if s.at_s + s.took_s < term_at]
    accepted = [s for s in sent if s.at_s < term_at <= s.at_s + s.took_s and not s.draining]
    print(
        f"\nimage SIGTERM, {CLIENTS} clients: before {dict(outcomes(before))} ({latency(before)});"
        f" in flight and accepted {dict(outcomes(accepted))}; all {dict(outcomes(sent))};"
        f" exit code {exit_code} after {exited_s:.2f} s"
    )
    assert exit_code == 0
    assert exited_s < 30
    assert set(outcomes(before)) <= GOOD | {SHED}
    assert set(outcomes(accepted)) <= GOOD
    log_url = f"sqlite:///{volume / 'predictions.db'}"
    print(" ", assert_log_matches(log_url, sent, "image-stop", wait_s=2))


def test_a_killed_runner_worker_ends_the_container_so_the_kubelet_restarts_it(cpu_image):
    """BentoML respawns no worker inside a container; its arbiter then stops the whole
    server. The container must end (the kubelet restarts it), never stay up unready."""
    with Container(cpu_image, "--read-only") as container:
        ready_s = container.wait_ready()
        (runner,) = container.workers("credit_risk_runner")
        killed_at = time.monotonic()
        runner.send_signal(signal.SIGKILL)
        exit_code = container.wait_exit(timeout_s=RUNNER_KILL_BOUND_S + 30)
        ended_s = time.monotonic() - killed_at
        print(
            f"\nimage ready in {ready_s:.1f} s; runner worker SIGKILLed: container exited "
            f"{exit_code} after {ended_s:.2f} s"
        )
    assert exit_code != 0
    assert ended_s < RUNNER_KILL_BOUND_S


def test_a_canary_pinned_at_run_time_decides_its_share_stickily_in_the_image(
    cpu_image, champion, credit_splits
):
    """The canary path in the image: the champion's own model pinned as a canary at 25%
    (`-e CREDIT_RISK_CANARY_TAG/…_SHARE`, the one model the test image carries), so the arms
    are told apart by the per-arm metrics, not by answers. Resent applicants go to the same
    arm: the canary's row count doubles exactly."""
    _, _, report = champion
    records = [
        dict(record, request_id=f"image-applicant-{i}")
        for i, record in enumerate(contract_records(credit_splits.test) * 3)
    ][:2000]
    pin = (
        "-e", f"CREDIT_RISK_CANARY_TAG={report.bento_model_tag}",
        "-e", "CREDIT_RISK_CANARY_SHARE=0.25",
        "-e", "CREDIT_RISK_CANARY_MIN_ROWS=1000000",  # the same model twice: nothing to judge
    )  # fmt: skip
    with Container(cpu_image, "--read-only", *pin) as container:
        container.wait_ready()
        info = requests.get(f"{container.url}/model", timeout=10).json()
        assert info["canary"]["model_tag"] == report.bento_model_tag
        assert info["canary"]["share"] == 0.25
        served_answers(container.url, records)
        first = arm_rows(container.url)
        served_answers(container.url, records[::-1])
        again = arm_rows(container.url)
    assert first["canary"] + first["champion"] == len(records)
    assert first["canary"] / len(records) == pytest.approx(0.25, abs=0.04)
    assert again == {role: 2 * rows for role, rows in first.items()}


def arm_rows(url: str) -> dict[str, int]:
    """Rows scored per arm so far (``credit_risk_probability_default_count{role}``)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    counts = {}
    for role in ("champion", "canary"):
        found = re.search(
            rf'^credit_risk_probability_default_count{{role="{role}"}} (\S+)$', text, re.M
        )
        counts[role] = int(float(found.group(1))) if found else 0
    return counts
