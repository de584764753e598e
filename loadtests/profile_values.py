"""What each Kubernetes profile reads from a sizing run: deploy/k8s/overlays/{cpu,gpu}/sizing.yaml.

    python -m loadtests.profile_values --run loadtests/results/sizing-20261123-1452

`make size` writes both files at the end of a run (``write_profiles``); this command writes them
again from a stored run (its steps.csv and deployment.yaml) and the newest runner sweep under
loadtests/results/. Each file is a kustomize patch of the objects in deploy/k8s/: the settings
that pick the topology and worker counts (ConfigMap), replicas and CPU, memory and GPU requests
and limits (Deployments), and the autoscalers' floor, ceiling and CPU target per stage, each
object annotated with the model version and the load it was sized for.

- **cpu**: the run's recommendation at its tightest SLO (the one ``make size-verify`` checks), as
  measured: in-process for this model, so the API alone; a remote runner on CPU if it says so.
- **gpu**: a runner on a GPU for the model the runner sweep puts there (a wider network than the
  served one, which is cheaper on CPU), behind the API tier of the run's cheapest
  remote-runner configuration.

How each figure follows from the measurements (docs/sizing.md, "Deployment values per
profile"): CPU is the measured instance's vCPU (split as ``recommend.deployment_values`` splits
it), with the limit equal to the request so a pod neither bursts past the CPU its capacity was
measured on nor is squeezed below it; memory is the peak RSS measured with a margin, request
equal to limit; the autoscaler targets the CPU utilisation at which a replica carries the
sizing's headroom of its measured capacity, which is not the headroom itself, because CPU was not
saturated at the latency knee.
"""

from __future__ import annotations

import argparse
import csv
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadtests import device_sizing, recommend, runs
from loadtests.knee import Measured, Step

OVERLAYS = runs.LOADTESTS.parent / "deploy" / "k8s" / "overlays"
VALUES_FILE = "sizing.yaml"
HEADER_WIDTH = 98
RUNNER_COMPONENT = "../../components/runner"
API, RUNNER = "credit-risk-api", "credit-risk-runner"
CONTAINERS = {API: "api", RUNNER: "runner"}
ANNOTATION = "credit-risk/"  # prefix of the provenance annotations on every patched object
# Peak RSS over a sizing run is one short run's peak: 1.5x leaves room for what it did not
# exercise (a model reload holds two models for a moment, allocator growth over days).
MEMORY_MARGIN = 1.5
MEMORY_STEP_MIB = 256
# Two pods of every stage at least, whatever the load needs: one can be drained or rolled while
# the other serves, and the autoscaler may add up to SCALE_OUT times the sized count.
AVAILABILITY_FLOOR = 2
SCALE_OUT = 2
# Host memory a CUDA process holds beyond a CPU one (the CUDA runtime and its kernels). Not
# measured here (no GPU on the sizing machine): a deliberate over-allowance per runner worker.
CUDA_HOST_MIB = 1024
# The runner-alone measurement of `make size` serves the runner's default single worker: its
# capacity and CPU are one worker's, about one vCPU.
RUNNER_ALONE_WORKERS = 1


@dataclass(frozen=True)
class Stage:
    """One Deployment and its autoscaler as sized."""

    deployment: str
    replicas: int  # what carries the target load, with the availability floor applied
    cpu: int  # vCPU, request = limit
    memory_mib: int  # request = limit
    target_cpu_percent: int
    gpu: int = 0

    @property
    def max_replicas(self) -> int:
        return self.replicas * SCALE_OUT


@dataclass(frozen=True)
class Profile:
    """What one overlay reads: its settings, its stages, and what they were sized for."""

    name: str
    model_tag: str
    slo_p99_ms: float
    target_rps: float
    sized_from: str  # the measurements, in words, for the annotation and the file's header
    env: dict[str, str]
    stages: tuple[Stage, ...]
    notes: list[str] = field(default_factory=list)


def memory_mib(rss_mib: float) -> int:
    """Peak resident memory with the margin, rounded up to a whole step."""
    return math.ceil(rss_mib * MEMORY_MARGIN / MEMORY_STEP_MIB) * MEMORY_STEP_MIB


def peak_rss_mib(measured: Measured) -> float:
    return max(step.server_rss_mb for step in measured.steps)


def target_cpu_percent(measured: Measured, slo: float, vcpu: int, headroom: float) -> int:
    """The CPU utilisation of a replica carrying ``headroom`` of its capacity: at the knee the
    server used capacity x CPU per request of its ``vcpu``; a replica at the sizing's operating
    point uses ``headroom`` of that. Scaling out there keeps each replica where the replica count
    was sized, rather than at a CPU figure that the latency SLO was never measured at."""
    at_capacity = measured.capacity(slo) * measured.cpu_ms_per_request(slo) / (10 * vcpu)
    return max(1, min(100, round(headroom * at_capacity)))


def stage(
    deployment: str,
    measured: Measured,
    slo: float,
    replicas: int,
    cpu: int,
    instance_vcpu: int,
    headroom: float,
) -> Stage:
    """A CPU stage sized from one configuration's measurements."""
    return Stage(
        deployment,
        max(AVAILABILITY_FLOOR, replicas),
        cpu,
        memory_mib(peak_rss_mib(measured)),
        target_cpu_percent(measured, slo, instance_vcpu, headroom),
    )


def by_name(configurations: list[Measured], name: str) -> Measured:
    (found,) = [m for m in configurations if m.name == name]
    return found


def served_stages(
    option: recommend.Option,
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
) -> list[Stage]:
    """The API (and, for a remote-runner option, the CPU runner) as the option measured them,
    with the instance's vCPU split as ``recommend.deployment_values`` splits it."""
    values = recommend.deployment_values(option, prices, "")
    measured = by_name(configurations, option["configuration"])
    vcpu = prices["instances"][option["instance"]]["vcpu"]
    slo, headroom = option["slo_p99_ms"], grid["headroom"]
    stages = [
        stage(
            API,
            measured,
            slo,
            option["replicas"],
            int(values["api"]["requests"]["cpu"]),
            vcpu,
            headroom,
        )
    ]
    if "runner" in values:
        cpu = int(values["runner"]["requests"]["cpu"])
        stages.append(stage(RUNNER, runner, slo, option["replicas"], cpu, vcpu, headroom))
    return stages


def cpu_profile(
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> Profile:
    """The run's recommendation at its tightest SLO."""
    options = recommend.recommend_per_slo(configurations, grid, prices)
    if not options:
        raise ValueError("no configuration of the run met any SLO: nothing to deploy")
    option = options[0]
    return Profile(
        "cpu",
        model_tag,
        option["slo_p99_ms"],
        grid["target_rps"],
        f"{option['configuration']} on {option['instance']}, "
        f"{option['capacity_rps_per_replica']:.0f} req/s per replica",
        dict(option["env"]),
        tuple(served_stages(option, configurations, runner, grid, prices)),
    )


def gpu_model(rows: list[dict[str, Any]]) -> str:
    """The first model of the sweep whose runner is cheaper on CUDA than on CPU at the loosest
    SLO (``device_sizing.device_verdicts``' rule)."""
    loosest = max(r["slo_p99_ms"] for r in rows)
    for model in dict.fromkeys(r["model"] for r in rows):
        options = [r for r in rows if r["model"] == model and r["slo_p99_ms"] == loosest]
        if min(options, key=lambda r: r["usd_per_million_rows"])["device"] == "cuda":
            return str(model)
    raise ValueError("the runner sweep puts no model's runner on a GPU: no GPU profile to size")


def gpu_profile(
    configurations: list[Measured],
    runner: Measured,
    sweep: dict[str, Any],
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> Profile:
    """The API tier of the cheapest remote-runner configuration (its own work does not grow with
    the model: features, contract, decisions), and a GPU runner for the sweep's model that needs
    one. The runner's GPU side is sized from the sweep's capacity at its tightest SLO (the runner
    is one stage of the end-to-end budget); its CPU side (HTTP, deserialising, batching: the same
    work on either device) from the run's runner-alone measurement, one-row calls, which bounds
    it from above since the API coalesces rows into fewer calls."""
    slo, headroom, target = min(grid["slos_p99_ms"]), grid["headroom"], grid["target_rps"]
    remote = [m for m in configurations if m.env.get("CREDIT_RISK_RUNNER_MODE") != "inprocess"]
    option = recommend.recommend(remote, slo, grid, prices)
    if option is None:
        raise ValueError(f"no remote-runner configuration met p99 <= {slo} ms")
    (api,) = (
        s
        for s in served_stages(option, configurations, runner, grid, prices)
        if s.deployment == API
    )
    rows = device_sizing.best_rows(sweep, prices, headroom)
    model = gpu_model(rows)
    runner_slo = min(r["slo_p99_ms"] for r in rows)
    (best,) = [
        r for r in rows if (r["model"], r["device"], r["slo_p99_ms"]) == (model, "cuda", runner_slo)
    ]
    replicas = max(AVAILABILITY_FLOOR, math.ceil(target / (best["rows_per_s"] * headroom)))
    # one vCPU per runner worker process, as many workers as carry a replica's share
    workers = math.ceil(target / replicas / (runner.capacity(slo) * headroom))
    gpu_runner = Stage(
        RUNNER,
        replicas,
        workers,
        memory_mib(workers * (peak_rss_mib(runner) + CUDA_HOST_MIB)),
        target_cpu_percent(runner, slo, RUNNER_ALONE_WORKERS, headroom),
        gpu=1,
    )
    env = dict(option["env"]) | {
        "CREDIT_RISK_RUNNER_MAX_BATCH_SIZE": str(best["max_batch_size"]),
        "CREDIT_RISK_RUNNER_WORKERS": str(workers),
    }
    return Profile(
        "gpu",
        model_tag,
        slo,
        target,
        f"API: {option['configuration']} on {option['instance']}, "
        f"{option['capacity_rps_per_replica']:.0f} req/s per replica; runner: model "
        f"'{model}' on {sweep['machine']}, {best['rows_per_s']:,.0f} rows/s per GPU at p99 <= "
        f"{runner_slo:.0f} ms (sweep {sweep['measured_at']}), HTTP side "
        f"{runner.capacity(slo):.0f} req/s per worker",
        env,
        (api, gpu_runner),
        [
            f"The runner is sized for the sweep's model '{model}' (random weights of the served "
            "network's shape, widened), not the served model: serve a model that size with it.",
            f"Runner memory allows {CUDA_HOST_MIB} MiB per worker for the CUDA runtime: not "
            "measured here.",
        ],
    )


def provenance(profile: Profile) -> dict[str, str]:
    return {
        f"{ANNOTATION}model-tag": profile.model_tag,
        f"{ANNOTATION}sized-for": f"{profile.target_rps:g} req/s at p99 <= "
        f"{profile.slo_p99_ms:g} ms",
        f"{ANNOTATION}sized-from": profile.sized_from,
    }


def resources(one: Stage) -> dict[str, dict[str, Any]]:
    amounts: dict[str, Any] = {"cpu": str(one.cpu), "memory": f"{one.memory_mib}Mi"}
    if one.gpu:
        amounts["nvidia.com/gpu"] = one.gpu
    return {"requests": amounts, "limits": dict(amounts)}


def patches(profile: Profile) -> list[dict[str, Any]]:
    """Strategic-merge patches of the base's objects: the ConfigMap, then each stage's
    Deployment and autoscaler."""
    meta = provenance(profile)
    found: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "credit-risk-config", "annotations": meta},
            "data": profile.env,
        }
    ]
    for one in profile.stages:
        found += [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": one.deployment, "annotations": meta},
                "spec": {
                    "replicas": one.replicas,
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": CONTAINERS[one.deployment], "resources": resources(one)}
                            ]
                        }
                    },
                },
            },
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": one.deployment, "annotations": meta},
                "spec": {
                    "minReplicas": one.replicas,
                    "maxReplicas": one.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": one.target_cpu_percent,
                                },
                            },
                        }
                    ],
                },
            },
        ]
    return found


def values_text(profile: Profile, source: str) -> str:
    """The file: a header that says where every figure came from, then the patches."""
    lines = [
        f"Written by `make size` (loadtests/profile_values.py) from {source}; do not edit: size "
        "again, or rerun `python -m loadtests.profile_values --run FOLDER`.",
        f"Profile {profile.name}, model {profile.model_tag}, {profile.target_rps:g} req/s at p99 "
        f"<= {profile.slo_p99_ms:g} ms, from {profile.sized_from}.",
        *(
            f"{s.deployment}: {s.replicas} replicas (floor {AVAILABILITY_FLOOR}) of {s.cpu} vCPU"
            f"{f' + {s.gpu} GPU' if s.gpu else ''}, {s.memory_mib} MiB; autoscaler "
            f"{s.replicas}-{s.max_replicas} at {s.target_cpu_percent}% CPU"
            for s in profile.stages
        ),
        *profile.notes,
    ]
    header = [f"# {part}" for line in lines for part in textwrap.wrap(line, HEADER_WIDTH)]
    return "\n".join(header) + "\n" + yaml.safe_dump_all(patches(profile), sort_keys=False)


def check_topology(profile: Profile, overlay: Path) -> None:
    """A profile with a runner stage needs the runner component in its overlay, and one without
    must not deploy a runner: kustomize would fail on the first, and the second would run a
    runner that nothing calls."""
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    has_runner = RUNNER_COMPONENT in spec.get("components", [])
    wants_runner = any(s.deployment == RUNNER for s in profile.stages)
    if has_runner != wants_runner:
        change = "add" if wants_runner else "remove"
        raise ValueError(
            f"{overlay}: the {profile.name} profile {'has' if wants_runner else 'has no'} "
            f"runner stage; {change} `components: [{RUNNER_COMPONENT}]` in its kustomization.yaml"
        )


def write_profiles(
    run: Path,
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
    overlays: Path = OVERLAYS,
) -> list[Path]:
    """Both profiles' sizing.yaml from one run's measurements (``run``: its folder, named in
    each file) and the newest runner sweep; the paths written."""
    source = display(run)
    profiles = [cpu_profile(configurations, runner, grid, prices, model_tag)]
    sweeps = device_sizing.load_sweeps(runs.RESULTS)
    if sweeps:
        profiles.append(gpu_profile(configurations, runner, sweeps[-1], grid, prices, model_tag))
    written = []
    for profile in profiles:
        folder = overlays / profile.name
        check_topology(profile, folder)
        (folder / VALUES_FILE).write_text(values_text(profile, source))
        written.append(folder / VALUES_FILE)
    return written


def step_of(row: Mapping[str, str]) -> Step:
    """One steps.csv line back as a Step (``report.write_steps`` wrote it); the error kinds stay
    text there and are not needed here: capacity reads the error count."""
    return Step(
        offered_rps=float(row["offered_rps"]),
        achieved_rps=float(row["achieved_rps"]),
        p50_ms=float(row["p50_ms"]),
        p95_ms=float(row["p95_ms"]),
        p99_ms=float(row["p99_ms"]),
        errors=int(row["errors"]),
        requests=int(row["requests"]),
        server_cpu_percent=float(row["server_cpu_percent"]),
        server_rss_mb=float(row["server_rss_mb"]),
        window_s=float(row["window_s"]),
    )


def read_run(folder: Path, grid: Mapping[str, Any]) -> tuple[list[Measured], Measured, str]:
    """A stored run back as measurements: steps.csv per configuration (environment and instance
    from the grid, by name), the runner-alone steps, and the model tag of deployment.yaml."""
    from loadtests.measure import RUNNER_ALONE  # imports BentoML: only when reading a run

    declared = {c["name"]: c for c in grid["configurations"]}
    steps: dict[str, list[Step]] = {}
    with (folder / "steps.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            steps.setdefault(row["configuration"], []).append(step_of(row))
    slos = tuple(grid["slos_p99_ms"])
    unknown = set(steps) - set(declared) - {RUNNER_ALONE}
    if unknown:
        raise ValueError(f"{folder}: configurations not in the grid: {sorted(unknown)}")
    configurations = [
        Measured(name, declared[name]["instance"], dict(declared[name]["env"]), found, slos)
        for name, found in steps.items()
        if name != RUNNER_ALONE
    ]
    runner = Measured(RUNNER_ALONE, device_sizing.CPU_INSTANCE, {}, steps[RUNNER_ALONE], slos)
    model_tag = next(yaml.safe_load_all((folder / "deployment.yaml").read_text()))["model_tag"]
    return configurations, runner, model_tag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.profile_values",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, required=True, metavar="FOLDER", help="a sizing run")
    parser.add_argument("--grid", type=Path, default=runs.LOADTESTS / "sizing.yaml")
    parser.add_argument("--prices", type=Path, default=runs.LOADTESTS / "prices.yaml")
    args = parser.parse_args(argv)
    grid = yaml.safe_load(args.grid.read_text())
    prices = yaml.safe_load(args.prices.read_text())
    configurations, runner, model_tag = read_run(args.run, grid)
    for path in write_profiles(args.run, configurations, runner, grid, prices, model_tag):
        print(f"wrote {display(path)}")


def display(path: Path) -> str:
    """A path relative to the repository where it lies inside it (the file's header)."""
    resolved = path.resolve()
    root = runs.LOADTESTS.parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


if __name__ == "__main__":
    main()
