"""What each Kubernetes profile reads from a sizing run: deploy/k8s/overlays/{cpu,gpu}/sizing.yaml,
and the runner component in the overlay's kustomization.yaml when its topology has a runner.

    python -m loadtests.sizing.profiles --run loadtests/results/sizing-20261123-1452

`make size` writes both profiles at the end of a run (``write_profiles``); this command writes
them again from a stored run (its steps.csv, deployment.yaml and, where the run measured the
prediction log, log-stage.json) and the newest runner sweep
under loadtests/results/, and the run's deployment.yaml with them, so the run and the profiles
show the same values. Each sizing.yaml is a kustomize patch of the objects in deploy/k8s/: the
settings that pick the topology and worker counts (ConfigMap), replicas and CPU, memory and GPU
requests and limits (Deployments), and the autoscalers' floor, ceiling and CPU target per stage,
each object annotated with the model version and the load it was sized for.

- **cpu**: the run's recommendation at its tightest SLO (the one ``make size-verify`` checks), as
  measured, in whichever topology it is: in-process (the API alone; this model so far) or a
  remote runner on the CPU image. The overlay's ``components`` follow it (the runner component
  exactly when there is a runner stage): a profile is deployable whatever the run recommends.
- **gpu**: a runner on a GPU for the model the runner sweep puts there (a wider network than the
  served one, which is cheaper on CPU), behind the API tier of the run's cheapest
  remote-runner configuration.

Every CPU-side figure is ``recommend.deployment``'s, the same values the run's deployment.yaml
holds (docs/sizing.md, "Deployment values per profile"); only the GPU runner, which no
recommendation covers, is sized here, from the runner sweep, with the same rules for memory,
floor and autoscaler target.
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

from loadtests import runs
from loadtests.sizing import device_sizing, log_stage, recommend, report
from loadtests.sizing.grid import target_rows_per_s
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.log_stage import LogStage
from loadtests.sizing.recommend import API, AVAILABILITY_FLOOR, RUNNER, Stage

OVERLAYS = runs.LOADTESTS.parent / "deploy" / "k8s" / "overlays"
VALUES_FILE = "sizing.yaml"
KUSTOMIZATION = "kustomization.yaml"
HEADER_WIDTH = 98
RUNNER_COMPONENT = "../../components/runner"
CONTAINERS = {API: "api", RUNNER: "runner"}
ANNOTATION = "credit-risk/"  # prefix of the provenance annotations on every patched object
# Host memory a CUDA process holds beyond a CPU one (the CUDA runtime and its kernels). Not
# measured here (no GPU on the sizing machine): a deliberate over-allowance per runner worker.
CUDA_HOST_MIB = 1024
# The runner-alone measurement of `make size` serves the runner's default single worker: its
# capacity and CPU are one worker's, about one vCPU.
RUNNER_ALONE_WORKERS = 1
WRITER = "loadtests/sizing/profiles.py"
RERUN = "python -m loadtests.sizing.profiles --run FOLDER"


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

    @property
    def has_runner(self) -> bool:
        return any(s.deployment == RUNNER for s in self.stages)


def sized_from(deployment: recommend.Deployment) -> str:
    return (
        f"{deployment.configuration} on {deployment.instance}, "
        f"{deployment.capacity_rps_per_replica:.0f} req/s per replica"
    )


def cpu_profile(
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
    log: LogStage | None = None,
) -> Profile:
    """The run's recommendation at its tightest SLO, as ``recommend.deployment`` sizes it (the
    prediction log's needs included, and said in the file's header when they set it)."""
    deployments = recommend.deployments(configurations, runner, grid, prices, model_tag, log)
    if not deployments:
        raise ValueError("no configuration of the run met any SLO: nothing to deploy")
    first = deployments[0]
    return Profile(
        "cpu",
        model_tag,
        first.slo_p99_ms,
        grid["target_rps"],
        sized_from(first),
        dict(first.env),
        first.stages,
        list(first.notes),
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
    log: LogStage | None = None,
) -> Profile:
    """The API tier of the cheapest remote-runner configuration (its own work does not grow with
    the model: features, contract, decisions), and a GPU runner for the sweep's model that needs
    one. The runner's GPU side is sized from the sweep's capacity at its tightest SLO (the runner
    is one stage of the end-to-end budget); its CPU side (HTTP, deserialising, batching: the same
    work on either device) from the run's runner-alone measurement, one-row calls, which bounds
    it from above since the API coalesces rows into fewer calls."""
    slo, headroom, target = min(grid["slos_p99_ms"]), grid["headroom"], grid["target_rps"]
    remote = [m for m in configurations if not recommend.in_process(m.env)]
    option = recommend.recommend(remote, slo, grid, prices, log)
    if option is None:
        raise ValueError(f"no remote-runner configuration met p99 <= {slo} ms")
    deployed = recommend.deployment(option, configurations, runner, grid, prices, model_tag)
    (api,) = (s for s in deployed.stages if s.deployment == API)
    rows = device_sizing.best_rows(sweep, prices, headroom)
    model = gpu_model(rows)
    runner_slo = min(r["slo_p99_ms"] for r in rows)
    (best,) = [
        r for r in rows if (r["model"], r["device"], r["slo_p99_ms"]) == (model, "cuda", runner_slo)
    ]
    rows_per_s = target_rows_per_s(grid)  # the GPU scores rows, however many a request carries
    replicas = max(AVAILABILITY_FLOOR, math.ceil(rows_per_s / (best["rows_per_s"] * headroom)))
    # one vCPU per runner worker process, as many workers as carry a replica's share
    workers = math.ceil(target / replicas / (runner.capacity(slo) * headroom))
    gpu_runner = Stage(
        RUNNER,
        replicas,
        workers,
        recommend.memory_mib(workers * (recommend.peak_rss_mib(runner) + CUDA_HOST_MIB)),
        recommend.target_cpu_percent(runner, slo, RUNNER_ALONE_WORKERS, headroom),
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
        f"API: {sized_from(deployed)}; runner: model "
        f"'{model}' on {sweep['machine']}, {best['rows_per_s']:,.0f} rows/s per GPU at p99 <= "
        f"{runner_slo:.0f} ms (sweep {sweep['measured_at']}), HTTP side "
        f"{runner.capacity(slo):.0f} req/s per worker",
        env,
        (api, gpu_runner),
        [
            *deployed.notes,
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


def patches(profile: Profile) -> list[dict[str, Any]]:
    """Strategic-merge patches of the base's objects: the ConfigMap, then each stage's
    Deployment and autoscaler, with the stage's own values (``Stage.values``)."""
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
        values = one.values()
        resources = {"requests": values["requests"], "limits": values["limits"]}
        scaling = values["autoscaling"]
        found += [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": one.deployment, "annotations": meta},
                "spec": {
                    "replicas": values["replicas"],
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": CONTAINERS[one.deployment], "resources": resources}
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
                    "minReplicas": scaling["minReplicas"],
                    "maxReplicas": scaling["maxReplicas"],
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": scaling["targetCPUUtilizationPercentage"],
                                },
                            },
                        }
                    ],
                },
            },
        ]
    return found


def comment(lines: list[str]) -> str:
    return "".join(f"# {part}\n" for line in lines for part in textwrap.wrap(line, HEADER_WIDTH))


def values_text(profile: Profile, source: str) -> str:
    """The file: a header that says where every figure came from, then the patches."""
    lines = [
        f"Written by `make size` ({WRITER}) from {source}; do not edit: size again, or rerun "
        f"`{RERUN}`.",
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
    return comment(lines) + yaml.safe_dump_all(patches(profile), sort_keys=False)


def kustomization_header(profile: Profile) -> list[str]:
    """What the overlay deploys, in words that follow its topology."""
    apply = f"  kubectl apply -k deploy/k8s/overlays/{profile.name}"
    if profile.name == "gpu":
        return [
            "The GPU profile, for a model large enough that the sizing puts its runner on a GPU "
            "(this project's model is not: the runner sweep prices its runner far cheaper on "
            'CPU; see docs/sizing.md, "Deployment values per profile"). The API runs on the CPU '
            "image (`make build`) and calls the runner, which runs on the CUDA image (`make "
            "build-cuda`) with one GPU per pod on GPU nodes (gpu.yaml).",
            apply,
            f"`make size` ({WRITER}) writes sizing.yaml and `components` here: the API tier from "
            "the run's cheapest remote-runner configuration, the runner from the newest runner "
            "sweep (loadtests/results/runner-sweep-*.json) for the model it puts on a GPU; do not "
            "edit either by hand.",
        ]
    topology = (
        "the API calls a runner Deployment on the same CPU image (../../components/runner)"
        if profile.has_runner
        else "the API scores in-process, no runner Deployment"
    )
    return [
        f"The CPU profile, as the sizing recommends it for the served model: {topology}; the "
        "CPU image (`make build`), no GPU.",
        apply,
        f"`make size` ({WRITER}) writes sizing.yaml from the run's recommendation at the "
        "tightest SLO (topology and workers in the ConfigMap; replicas, CPU and memory; "
        "autoscaler floor, ceiling and CPU target) and `components` here, with the runner "
        "component exactly when that recommendation has a runner stage; do not edit either by "
        "hand. Set the image with `kustomize edit set image "
        "credit-risk=REGISTRY/credit-risk:TAG` (or edit newTag below).",
    ]


class _IndentedDumper(yaml.SafeDumper):
    """Block sequences indented under their key, as the hand-written manifests have them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def kustomization_text(profile: Profile, current: str) -> str:
    """The overlay's kustomization.yaml with the runner component in ``components`` exactly
    when ``profile`` has a runner stage (kustomize fails on runner patches without it, and
    with it and no runner stage a runner would run that nothing calls); everything else kept
    as it is (the images someone set stay set)."""
    spec: dict[str, Any] = yaml.safe_load(current)
    components = [c for c in spec.get("components", []) if c != RUNNER_COMPONENT]
    if profile.has_runner:
        components.append(RUNNER_COMPONENT)
    ordered: dict[str, Any] = {}
    for key, value in spec.items():
        if key != "components":
            ordered[key] = value
        if key == "resources" and components:
            ordered["components"] = components
    head = {k: ordered.pop(k) for k in ("apiVersion", "kind") if k in ordered}
    sections = [head, *({key: value} for key, value in ordered.items())]
    body = "\n".join(
        yaml.dump(section, Dumper=_IndentedDumper, sort_keys=False) for section in sections
    )
    return comment(kustomization_header(profile)) + body


@dataclass(frozen=True)
class Written:
    """The sizing.yaml files written, and why a profile was not (it keeps its last values)."""

    paths: list[Path]
    skipped: list[str]


def write_profiles(
    run: Path,
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
    overlays: Path = OVERLAYS,
    log: LogStage | None = None,
) -> Written:
    """Both profiles from one run's measurements (``run``: its folder, named in each file) and
    the newest runner sweep: each overlay's sizing.yaml, and its kustomization.yaml's
    components for the profile's topology. The CPU profile is the run's recommendation (raises
    when nothing met any SLO); the GPU profile needs a remote-runner configuration that met the
    tightest SLO and a sweep that puts a model on a GPU: a run without them still writes the
    CPU profile, and says why the GPU one was not."""
    source = display(run)
    profiles = [cpu_profile(configurations, runner, grid, prices, model_tag, log)]
    skipped = []
    sweeps = device_sizing.load_sweeps(runs.RESULTS)
    try:
        if not sweeps:
            raise ValueError(f"no runner sweep under {display(runs.RESULTS)}")
        profiles.append(
            gpu_profile(configurations, runner, sweeps[-1], grid, prices, model_tag, log)
        )
    except ValueError as error:
        skipped.append(f"gpu: {error}")
    written = []
    for profile in profiles:
        folder = overlays / profile.name
        kustomization = folder / KUSTOMIZATION
        kustomization.write_text(kustomization_text(profile, kustomization.read_text()))
        (folder / VALUES_FILE).write_text(values_text(profile, source))
        written.append(folder / VALUES_FILE)
    return Written(written, skipped)


def step_of(row: Mapping[str, str]) -> Step:
    """One steps.csv line back as a Step (``report.write_steps`` wrote it), the generator's
    figures included where the run has them (a saturated step is no point of the capacity
    fit); the error kinds stay text there and are not needed here: capacity reads the error
    count."""
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
        generator_cpu_percent=float(row.get("generator_cpu_percent") or 0.0),
        generator_peak_cpu_percent=float(row.get("generator_peak_cpu_percent") or 0.0),
        generator_processes=int(row.get("generator_processes") or 0),
        sent_late=int(row.get("sent_late") or 0),
        applications=int(row.get("applications_per_request") or 1),  # older runs: one
    )


def read_run(folder: Path, grid: Mapping[str, Any]) -> tuple[list[Measured], Measured, str]:
    """A stored run back as measurements: steps.csv per configuration and applications per
    request (environment and instance from the grid, by name), the runner-alone steps, and the
    model tag of deployment.yaml. The log stage, where the run measured it: ``log_stage.read``."""
    from loadtests.sizing.measure import RUNNER_ALONE  # imports BentoML: only when reading a run

    declared = {c["name"]: c for c in grid["configurations"]}
    steps: dict[tuple[str, int], list[Step]] = {}
    with (folder / "steps.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = step_of(row)
            steps.setdefault((row["configuration"], step.applications), []).append(step)
    slos = tuple(grid["slos_p99_ms"])
    unknown = {name for name, _ in steps} - set(declared) - {RUNNER_ALONE}
    if unknown:
        raise ValueError(f"{folder}: configurations not in the grid: {sorted(unknown)}")
    configurations = [
        Measured(name, declared[name]["instance"], dict(declared[name]["env"]), found, slos)
        for (name, _), found in steps.items()
        if name != RUNNER_ALONE
    ]
    runner = Measured(RUNNER_ALONE, device_sizing.CPU_INSTANCE, {}, steps[RUNNER_ALONE, 1], slos)
    model_tag = next(yaml.safe_load_all((folder / "deployment.yaml").read_text()))["model_tag"]
    return configurations, runner, model_tag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.sizing.profiles",
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
    log = log_stage.read(args.run)
    deployments = recommend.deployments(configurations, runner, grid, prices, model_tag, log)
    report.write_deployment(args.run, deployments)
    print(f"wrote {display(args.run / 'deployment.yaml')}")
    written = write_profiles(args.run, configurations, runner, grid, prices, model_tag, log=log)
    for path in written.paths:
        print(f"wrote {display(path)} and its {KUSTOMIZATION}")
    for reason in written.skipped:
        print(f"not written: {reason}")


def display(path: Path) -> str:
    """A path relative to the repository where it lies inside it (the file's header)."""
    resolved = path.resolve()
    root = runs.LOADTESTS.parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


if __name__ == "__main__":
    main()
