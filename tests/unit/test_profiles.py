"""From a sizing run to the deployment profiles (loadtests/sizing/profiles.py): the committed
values are exactly what the committed results give; the profile deploys the very values of the
run's deployment.yaml (one computation, ``recommend.deployment``); values from a run land in the
objects that kustomize renders (replicas, CPU/memory/GPU requests and limits, autoscaler bounds
and target, settings, the model-version annotation); the arithmetic behind them; and the CPU
profile deploys whichever topology the run recommends, the runner component with it or not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import test_manifests as manifests
import yaml

from loadtests import runs
from loadtests.sizing import device_sizing, log_stage, profiles, recommend, report
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.log_stage import LogStage
from loadtests.sizing.profiles import Profile
from loadtests.sizing.recommend import API, RUNNER, Stage

RUN = runs.RESULTS / "sizing-20261123-1452"  # the reference run the sizing docs describe
# the run the committed profiles come from: the newest sizing of the current code
PROFILED_RUN = runs.RESULTS / "sizing-20261204-2330"
GRID = yaml.safe_load((runs.LOADTESTS / "sizing.yaml").read_text())
PRICES = yaml.safe_load((runs.LOADTESTS / "prices.yaml").read_text())


@pytest.fixture(scope="module")
def run() -> tuple[list[Measured], Measured, str]:
    return profiles.read_run(RUN, GRID)


@pytest.fixture
def k8s(tmp_path: Path) -> Path:
    """A copy of deploy/k8s (and the monitoring files its base includes) to write values into."""
    deploy = tmp_path / "deploy"
    shutil.copytree(manifests.K8S, deploy / "k8s")
    shutil.copytree(manifests.MONITORING, deploy / "monitoring")
    return deploy / "k8s"


def test_committed_values_are_what_the_committed_results_give(k8s: Path):
    configurations, runner, model_tag = profiles.read_run(PROFILED_RUN, GRID)
    written = profiles.write_profiles(
        PROFILED_RUN, configurations, runner, GRID, PRICES, model_tag, overlays=k8s / "overlays"
    )
    assert [p.parent.name for p in written.paths] == ["cpu", "gpu"]
    assert written.skipped == []
    for path in written.paths:
        for name in (profiles.VALUES_FILE, profiles.KUSTOMIZATION):
            committed = manifests.K8S / "overlays" / path.parent.name / name
            assert (path.parent / name).read_text() == committed.read_text(), (
                f"{committed} is stale: make size-profiles RUN={PROFILED_RUN}"
            )


def test_the_committed_runs_deployment_yaml_is_what_its_steps_give(run, tmp_path: Path):
    configurations, runner, model_tag = run
    report.write_deployment(
        tmp_path, recommend.deployments(configurations, runner, GRID, PRICES, model_tag)
    )
    assert (tmp_path / "deployment.yaml").read_text() == (RUN / "deployment.yaml").read_text()


def sizing_patches(overlay: Path) -> dict[tuple[str, str], dict]:
    return {
        (patch["kind"], patch["metadata"]["name"]): patch
        for patch in yaml.safe_load_all((overlay / profiles.VALUES_FILE).read_text())
    }


@pytest.mark.parametrize("topology", ["in-process", "remote runner"])
def test_the_profile_deploys_the_values_of_the_runs_deployment_yaml(run, k8s, tmp_path, topology):
    """One run, two writers: the run's deployment.yaml (`make size`'s report) and the CPU
    profile carry the same replicas, requests, limits and autoscaler target per stage (a run
    once wrote a 70% target into one and 54% into the other)."""
    configurations, runner, model_tag = run
    if topology == "remote runner":  # only the remote-runner configurations were measured
        configurations = [m for m in configurations if not recommend.in_process(m.env)]
    options = recommend.recommend_per_slo(configurations, GRID, PRICES)
    report.write_sizing_report(tmp_path, configurations, runner, options, GRID, PRICES, model_tag)
    profiles.write_profiles(
        tmp_path, configurations, runner, GRID, PRICES, model_tag, overlays=k8s / "overlays"
    )
    first = next(yaml.safe_load_all((tmp_path / "deployment.yaml").read_text()))
    patches = sizing_patches(k8s / "overlays" / "cpu")
    stages = {key: first[key] for key in ("api", "runner") if key in first}
    assert ("runner" in stages) == (topology == "remote runner")
    for values in stages.values():
        name = values["deployment"]
        deployment = patches["Deployment", name]["spec"]
        assert deployment["replicas"] == values["replicas"]
        (container,) = deployment["template"]["spec"]["containers"]
        assert container["resources"] == {
            "requests": values["requests"],
            "limits": values["limits"],
        }
        autoscaler = patches["HorizontalPodAutoscaler", name]["spec"]
        (metric,) = autoscaler["metrics"]
        target = metric["resource"]["target"]["averageUtilization"]
        assert target == values["autoscaling"]["targetCPUUtilizationPercentage"]
        assert autoscaler["minReplicas"] == values["autoscaling"]["minReplicas"]
        assert autoscaler["maxReplicas"] == values["autoscaling"]["maxReplicas"]
    assert patches["ConfigMap", "credit-risk-config"]["data"] == first["env"]


def test_committed_run_gives_the_figures_the_docs_quote(run):
    """Worked by hand from report.md: 2,000 req/s at 70% of 582.5 req/s per 2-vCPU replica is
    5 replicas; at 70% of capacity a replica uses 0.7 x 582.5 req/s x 2.653 ms of 2 vCPU = 54%;
    1,331 MiB peak x 1.5 rounds up to 2,048 MiB. The GPU runner: 2 replicas (the floor; one
    H100 carries 334,059 rows/s), 1,000 req/s each over 70% of 373 req/s per worker = 4."""
    configurations, runner, model_tag = run
    cpu = profiles.cpu_profile(configurations, runner, GRID, PRICES, model_tag)
    assert cpu.env == {"CREDIT_RISK_RUNNER_MODE": "inprocess", "CREDIT_RISK_API_WORKERS": "2"}
    assert cpu.stages == (Stage(API, 5, 2, 2048, 54),)
    assert cpu.stages[0].max_replicas == 10
    (sweep,) = device_sizing.load_sweeps(runs.RESULTS)
    gpu = profiles.gpu_profile(configurations, runner, sweep, GRID, PRICES, model_tag)
    api, gpu_runner = gpu.stages
    assert (api.deployment, api.replicas, api.cpu) == (API, 9, 1)
    assert (gpu_runner.deployment, gpu_runner.replicas, gpu_runner.cpu, gpu_runner.gpu) == (
        RUNNER,
        2,
        4,
        1,
    )
    assert gpu.env["CREDIT_RISK_RUNNER_MODE"] == "remote"
    assert gpu.env["CREDIT_RISK_RUNNER_WORKERS"] == "4"
    assert gpu.env["CREDIT_RISK_RUNNER_MAX_BATCH_SIZE"] == "512"
    assert "mlp 3x4096" in gpu.sized_from


def assert_landed(profile: Profile, objects: list[dict]) -> None:
    """Every value of ``profile`` is in the rendered objects, and the model tag on each."""
    settings = manifests.by_kind("ConfigMap", objects)["credit-risk-config"]
    assert profile.env.items() <= settings["data"].items()
    deployments = manifests.by_kind("Deployment", objects)
    autoscalers = manifests.by_kind("HorizontalPodAutoscaler", objects)
    for stage in profile.stages:
        deployment, autoscaler = deployments[stage.deployment], autoscalers[stage.deployment]
        assert deployment["spec"]["replicas"] == stage.replicas
        amounts = {"cpu": str(stage.cpu), "memory": f"{stage.memory_mib}Mi"}
        if stage.gpu:
            amounts["nvidia.com/gpu"] = stage.gpu
        resources = manifests.container(deployment)["resources"]
        assert resources == {"requests": amounts, "limits": amounts}
        assert autoscaler["spec"]["minReplicas"] == stage.replicas
        assert autoscaler["spec"]["maxReplicas"] == stage.max_replicas
        (metric,) = autoscaler["spec"]["metrics"]
        assert metric["resource"]["target"]["averageUtilization"] == stage.target_cpu_percent
        for sized in (settings, deployment, autoscaler):
            annotations = sized["metadata"]["annotations"]
            assert annotations["credit-risk/model-tag"] == profile.model_tag
    assert set(autoscalers) == {stage.deployment for stage in profile.stages}


def test_values_of_another_run_land_in_both_rendered_profiles(run, k8s: Path):
    """The committed measurements sized for a load 3.5x as large and another model tag: other
    figures than the committed ones, and each of them in what `kubectl apply -k` would apply."""
    configurations, runner, _ = run
    grid = GRID | {"target_rps": 7000}
    profiles.write_profiles(
        RUN, configurations, runner, grid, PRICES, "credit-risk:v9", overlays=k8s / "overlays"
    )
    (sweep,) = device_sizing.load_sweeps(runs.RESULTS)
    cpu = profiles.cpu_profile(configurations, runner, grid, PRICES, "credit-risk:v9")
    gpu = profiles.gpu_profile(configurations, runner, sweep, grid, PRICES, "credit-risk:v9")
    assert cpu.stages[0].replicas == 18  # ceil(7000 / (582.5 x 0.7))
    for profile in (cpu, gpu):
        objects = manifests.kustomize(k8s / "overlays" / profile.name)
        for document in objects:
            manifests.kubernetes_validate.validate(
                document, manifests.KUBERNETES_VERSION, strict=True
            )
        assert_landed(profile, objects)


def ramp(name: str, env: dict[str, str], cpu_ms: float, rss_mib: float) -> Measured:
    """p99 doubling every 100 req/s from 10 ms at 100 (p99 <= 100 ms up to 432.2 req/s), each
    request costing ``cpu_ms`` of CPU."""
    steps = [
        Step(
            rate,
            rate,
            5.0,
            8.0,
            10 * 2 ** ((rate - 100) / 100),
            0,
            1000,
            rate * cpu_ms / 10,
            rss_mib,
        )
        for rate in (100, 200, 300, 400, 500, 600)
    ]
    return Measured(name, "cpu-2", env, steps, (100.0,))


def test_memory_and_the_autoscaler_target_follow_the_measurements():
    assert recommend.memory_mib(1331) == 2048  # 1,996.5 MiB rounded up to 256 MiB steps
    assert recommend.memory_mib(1366) == 2304
    busy = ramp("busy", {}, cpu_ms=3.0, rss_mib=1000.0)
    light = ramp("light", {}, cpu_ms=1.0, rss_mib=1000.0)
    # 432.2 req/s x 3 ms is 64.8% of 2 vCPU at capacity: 45% at 70% of it; a third of that
    assert recommend.target_cpu_percent(busy, 100.0, 2, 0.7) == 45
    assert recommend.target_cpu_percent(light, 100.0, 2, 0.7) == 15
    assert recommend.target_cpu_percent(busy, 100.0, 1, 0.7) == 91  # one vCPU
    assert recommend.target_cpu_percent(ramp("hot", {}, 9.0, 1.0), 100.0, 1, 0.7) == 100


def components(overlay: Path) -> list[str]:
    spec = yaml.safe_load((overlay / profiles.KUSTOMIZATION).read_text())
    return list(spec.get("components", []))


def test_the_cpu_profile_deploys_the_topology_the_run_recommends(k8s: Path):
    """A run where only a remote runner met the SLO: the CPU profile is written with the runner
    component (the CPU runner renders on the CPU image, without a GPU); a later in-process run
    takes it out again (no runner Deployment that nothing calls). Everything else of the
    overlay stays as it was, and the GPU profile keeps its runner either way."""
    overlay = k8s / "overlays" / "cpu"
    images = yaml.safe_load((overlay / profiles.KUSTOMIZATION).read_text())["images"]
    # committed: as the newest sizing run recommended (a remote runner)
    assert components(overlay) == [profiles.RUNNER_COMPONENT]
    runner = ramp("runner alone", {}, 2.0, 600.0)
    grid = {"target_rps": 2000, "headroom": 0.7, "slos_p99_ms": [100]}
    remote = ramp("remote", {"CREDIT_RISK_RUNNER_MODE": "remote"}, 3.0, 1200.0)
    for configurations, wanted in (
        ([remote], [API, RUNNER]),
        ([remote, ramp("fast", {"CREDIT_RISK_RUNNER_MODE": "inprocess"}, 3.0, 1200.0)], [API]),
    ):
        if len(configurations) > 1:  # in-process carries the same load on half the instances
            configurations[1].steps[:] = [
                Step(**{**s.__dict__, "offered_rps": 2 * s.offered_rps})
                for s in configurations[1].steps
            ]
        written = profiles.write_profiles(
            RUN, configurations, runner, grid, PRICES, "credit-risk:v2", overlays=k8s / "overlays"
        )
        assert [p.parent.name for p in written.paths] == ["cpu", "gpu"]
        profile = profiles.cpu_profile(configurations, runner, grid, PRICES, "credit-risk:v2")
        assert [s.deployment for s in profile.stages] == wanted
        has_runner = RUNNER in wanted
        assert components(overlay) == ([profiles.RUNNER_COMPONENT] if has_runner else [])
        kustomization = (overlay / profiles.KUSTOMIZATION).read_text()
        assert ("scores in-process" in kustomization) != has_runner  # its header says so
        assert yaml.safe_load(kustomization)["images"] == images
        assert components(k8s / "overlays" / "gpu") == [profiles.RUNNER_COMPONENT]
        objects = manifests.kustomize(overlay)
        for document in objects:
            manifests.kubernetes_validate.validate(
                document, manifests.KUBERNETES_VERSION, strict=True
            )
        assert_landed(profile, objects)
        deployments = manifests.by_kind("Deployment", objects)
        assert (RUNNER in deployments) == has_runner
        if has_runner:
            assert "cuda" not in manifests.container(deployments[RUNNER])["image"]
            assert "nvidia.com/gpu" not in str(deployments[RUNNER])


def test_the_gpu_profile_needs_a_model_the_sweep_puts_on_a_gpu():
    (sweep,) = device_sizing.load_sweeps(runs.RESULTS)
    rows = device_sizing.best_rows(sweep, PRICES, 0.7)
    assert profiles.gpu_model(rows) == "mlp 3x4096"
    cpu_only = [r for r in rows if r["model"] != "mlp 3x4096"]
    with pytest.raises(ValueError, match="no model's runner on a GPU"):
        profiles.gpu_model(cpu_only)


def test_a_run_without_a_remote_runner_still_writes_the_cpu_profile(k8s: Path):
    """Nothing sizes the GPU profile's API tier then: it keeps its values, and says why."""
    gpu_values = (k8s / "overlays" / "gpu" / profiles.VALUES_FILE).read_text()
    inprocess = ramp("fast", {"CREDIT_RISK_RUNNER_MODE": "inprocess"}, 3.0, 1200.0)
    grid = {"target_rps": 2000, "headroom": 0.7, "slos_p99_ms": [100]}
    written = profiles.write_profiles(
        RUN, [inprocess], inprocess, grid, PRICES, "credit-risk:v2", overlays=k8s / "overlays"
    )
    assert [p.parent.name for p in written.paths] == ["cpu"]
    assert written.skipped == ["gpu: no remote-runner configuration met p99 <= 100 ms"]
    assert (k8s / "overlays" / "gpu" / profiles.VALUES_FILE).read_text() == gpu_values


def test_a_log_limited_profile_deploys_the_replicas_the_log_needs(run, k8s: Path):
    """The reference run's in-process recommendation carries 2,000 req/s on 5 replicas; with a
    pod's log taking 400 rows/s (2 API workers) it needs ceil(2,000 / (400 x 0.7)) = 8, and
    with one database taking 2,500 rows/s, two databases: the profile deploys 8 and its header
    says both."""
    configurations, runner, model_tag = run
    log = LogStage({1: 200.0, 2: 400.0}, 2_500.0, 2, 256)
    written = profiles.write_profiles(
        RUN, configurations, runner, GRID, PRICES, model_tag, overlays=k8s / "overlays", log=log
    )
    assert [p.parent.name for p in written.paths] == ["cpu", "gpu"]
    cpu = profiles.cpu_profile(configurations, runner, GRID, PRICES, model_tag, log)
    assert cpu.stages[0].replicas == 8
    header = (k8s / "overlays" / "cpu" / profiles.VALUES_FILE).read_text()
    assert "to 8 by the prediction log" in header
    assert "The database is the limit" in header
    assert_landed(cpu, manifests.kustomize(k8s / "overlays" / "cpu"))
    unlimited = profiles.cpu_profile(configurations, runner, GRID, PRICES, model_tag)
    assert unlimited.stages[0].replicas == 5
    assert unlimited.notes == []


def test_a_batched_run_reads_back_as_it_was_sized(tmp_path: Path):
    """A run measured at 1 and 256 applications per request, with its log stage: steps.csv and
    log-stage.json give back the same measurements, so `make size-profiles` writes the same
    deployment.yaml as the run did."""
    grid = GRID | {"applications_mix": {1: 0.95, 256: 0.05}, "target_rps": 500}
    name = GRID["configurations"][3]["name"]  # in-process, 2 API workers
    env = dict(GRID["configurations"][3]["env"])
    single = ramp(name, env, cpu_ms=2.0, rss_mib=900.0)
    batched = ramp(name, env, cpu_ms=150.0, rss_mib=1400.0)
    batched.steps[:] = [
        Step(**{**s.__dict__, "offered_rps": s.offered_rps / 20, "applications": 256})
        for s in batched.steps
    ]
    runner = ramp("runner alone (pre-built matrices)", {}, cpu_ms=1.0, rss_mib=600.0)
    log = LogStage({2: 2_000.0}, 20_000.0, 2, 256, {"sqlite, 2 writers": [2_000.0]})
    options = recommend.recommend_per_slo([single, batched], grid, PRICES, log)
    option = options[0]
    # 6,875 rows/s over 70% of 2,000 per pod: 5 replicas, where latency needs 4
    assert (option["replicas_for_latency"], option["replicas"]) == (4, 5)
    report.write_sizing_report(
        tmp_path, [single, batched], runner, options, grid, PRICES, "credit-risk:v3", log
    )
    configurations, read_runner, model_tag = profiles.read_run(tmp_path, grid)
    assert [(m.name, m.applications) for m in configurations] == [(name, 1), (name, 256)]
    assert model_tag == "credit-risk:v3"
    read_log = log_stage.read(tmp_path)
    assert read_log == log
    again = recommend.deployments(configurations, read_runner, grid, PRICES, model_tag, read_log)
    (tmp_path / "again").mkdir()
    report.write_deployment(tmp_path / "again", again)
    assert (tmp_path / "again" / "deployment.yaml").read_text() == (
        tmp_path / "deployment.yaml"
    ).read_text()
    # memory from the larger of the two servers: a pod may be sent either
    assert again[0].stages[0].memory_mib == recommend.memory_mib(1400.0)
