"""From measured capacities to a deployment: per SLO, the configuration and replica count that
carry the target load at the least cost (prices from loadtests/prices.yaml), and the one set of
deployment values that follows from a recommendation (``deployment``): per stage, replicas, CPU
and memory, and the autoscaler's floor, ceiling and CPU target. The run's deployment.yaml
(``report``) and the Kubernetes profiles (``profiles``) both write these values and compute none
of their own: when each had its own arithmetic, one run wrote a 70% autoscaler target into
deployment.yaml and 54% into the profile it deployed. Pure arithmetic over ``knee.Measured``.

The load is ``target_rps`` requests in the grid's mix of applications per request
(``grid.py``); a configuration's capacity for it combines its measured capacity at each batch
size (``mix_capacity``). Its replicas are the more of what the latency SLO needs and what the
prediction log needs for the target's rows/s per pod (``log_plan``, from ``log_stage.py``); a
target that one log database cannot take is stated as the limit (``log_notes``), since no
replica count lifts it.

How each figure follows from the measurements (docs/sizing.md, "Deployment values per
profile"): CPU is the measured instance's vCPU, all of it to the API in process, halved between
the API and the runner otherwise, with the limit equal to the request so a pod neither bursts
past the CPU its capacity was measured on nor is squeezed below it; memory is the peak RSS
measured with a margin, request equal to limit; the autoscaler targets the CPU utilisation at
which a replica carries the sizing's headroom of its measured capacity, which is not the
headroom itself, because CPU was not saturated at the latency knee.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtests.sizing.grid import applications_mix, mean_applications, target_rows_per_s
from loadtests.sizing.knee import Measured
from loadtests.sizing.log_stage import LogStage, api_workers

Option = dict[str, Any]  # one recommendation, as recommendation.json keeps it

API, RUNNER = "credit-risk-api", "credit-risk-runner"  # the Deployments in deploy/k8s/
STAGE_KEYS = {API: "api", RUNNER: "runner"}  # and their keys in deployment.yaml
# Peak RSS over a sizing run is one short run's peak: 1.5x leaves room for what it did not
# exercise (a model reload holds two models for a moment, allocator growth over days).
MEMORY_MARGIN = 1.5
MEMORY_STEP_MIB = 256
# Two pods of every stage at least, whatever the load needs: one can be drained or rolled while
# the other serves, and the autoscaler may add up to SCALE_OUT times the sized count.
AVAILABILITY_FLOOR = 2
SCALE_OUT = 2
LATENCY_LIMIT, LOG_LIMIT = "latency SLO", "prediction log"  # what set a recommendation's replicas


def grouped(measured: list[Measured]) -> dict[str, dict[int, Measured]]:
    """Each configuration's measurements by applications per request, in the run's order."""
    found: dict[str, dict[int, Measured]] = {}
    for result in measured:
        found.setdefault(result.name, {})[result.applications] = result
    return found


def mix_capacity(by_size: Mapping[int, Measured], slo: float, mix: Mapping[int, float]) -> float:
    """Requests/s of the mix one replica carries at the SLO: a request of b applications takes
    1 / capacity_b of a replica-second, so the mix's capacity is 1 / sum(share_b / capacity_b)
    (0 when a batch size of the mix met no SLO). Each batch size's capacity bounds its own
    requests' p99; the mix's p99 is not measured, its work is taken to add up."""
    missing = sorted(set(mix) - set(by_size))
    if missing:
        name = next(iter(by_size.values())).name if by_size else "a configuration"
        raise ValueError(f"{name}: the mix has {missing} applications/request, not measured")
    capacities = {size: by_size[size].capacity(slo) for size in mix}
    if min(capacities.values()) <= 0:
        return 0.0
    if len(mix) == 1:
        return next(iter(capacities.values()))
    return round(1 / sum(share / capacities[size] for size, share in mix.items()), 1)


def mix_cpu_ms_per_request(
    by_size: Mapping[int, Measured], slo: float, mix: Mapping[int, float]
) -> float:
    """Server CPU per request of the mix: each batch size's, weighted by its share."""
    if len(mix) == 1:
        return by_size[next(iter(mix))].cpu_ms_per_request(slo)
    return round(
        sum(share * by_size[size].cpu_ms_per_request(slo) for size, share in mix.items()), 3
    )


def log_plan(
    log: LogStage | None, api_workers: int, rows_per_s: float, headroom: float
) -> dict[str, Any]:
    """What the target's rows/s need of the prediction log, at ``headroom`` of its measured
    rates like every stage: API replicas (each pod's log takes its measured rows/s, so a
    replica count below ``replicas_for_log`` would answer rows it cannot write) and databases
    (one takes its measured rows/s, whatever the replicas: more than one needed is a limit no
    replica count lifts). Without a measurement, nothing is required of it (older runs)."""
    per_pod = log.pod_rows_per_s(api_workers) if log else None
    per_database = log.per_database_rows_per_s if log else None
    databases = math.ceil(rows_per_s / (per_database * headroom)) if per_database else None
    return {
        "target_rows_per_s": rows_per_s,
        "api_workers_per_pod": api_workers,
        "rows_per_s_per_pod": per_pod,
        "replicas_for_log": math.ceil(rows_per_s / (per_pod * headroom)) if per_pod else 0,
        "rows_per_s_per_database": per_database,
        "databases_needed": databases,
        "database_is_the_limit": bool(databases and databases > 1),
    }


def log_notes(option: Option) -> list[str]:
    """What the prediction log did to a recommendation, in words (empty: nothing)."""
    log = option.get("log") or {}
    notes = []
    if option.get("limited_by") == LOG_LIMIT:
        notes.append(
            f"Replicas raised from {option['replicas_for_latency']} (latency) to "
            f"{option['replicas']} by the prediction log: {log['target_rows_per_s']:,.0f} "
            f"rows/s at {log['rows_per_s_per_pod']:,.0f} rows/s per pod."
        )
    if log.get("database_is_the_limit"):
        notes.append(
            "The database is the limit: one PostgreSQL database took "
            f"{log['rows_per_s_per_database']:,.0f} rows/s here, and "
            f"{log['target_rows_per_s']:,.0f} rows/s need {log['databases_needed']} at the same "
            "headroom; more API replicas do not lift it. Split the pods between that many log "
            "databases or give the log a database that takes more."
        )
    return notes


def recommend(
    measured: list[Measured],
    slo: float,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    log: LogStage | None = None,
) -> Option | None:
    """The configuration and replica count carrying the target load (``target_rps`` requests
    of the grid's applications mix) at the least cost: enough replicas for the latency SLO and
    for the prediction log's rows (``log_plan``), whichever needs more."""
    mix = applications_mix(grid)
    target_rps, headroom = grid["target_rps"], grid["headroom"]
    rows_per_s = target_rows_per_s(grid)
    options = []
    for name, by_size in grouped(measured).items():
        first = next(iter(by_size.values()))
        capacity = mix_capacity(by_size, slo, mix)
        if capacity <= 0 or first.instance not in prices["instances"]:
            continue
        for_latency = math.ceil(target_rps / (capacity * headroom))
        needs = log_plan(log, api_workers(first.env), rows_per_s, headroom)
        replicas = max(for_latency, needs["replicas_for_log"])
        hourly = replicas * prices["instances"][first.instance]["usd_per_hour"]
        options.append(
            {
                "slo_p99_ms": slo,
                "configuration": name,
                "env": first.env,
                "instance": first.instance,
                "capacity_rps_per_replica": capacity,
                "capacity_rows_per_s_per_replica": round(capacity * mean_applications(mix), 1),
                "server_cpu_ms_per_request": mix_cpu_ms_per_request(by_size, slo, mix),
                "capacity_by_applications": [
                    {
                        "applications_per_request": size,
                        "rps": one.capacity(slo),
                        "rows_per_s": one.capacity_rows_per_s(slo),
                        "server_cpu_ms_per_request": one.cpu_ms_per_request(slo),
                        "generator_bound": one.generator_bound(slo),
                    }
                    for size, one in sorted(by_size.items())
                ],
                "applications_mix": [
                    {"applications_per_request": size, "share": share}
                    for size, share in mix.items()
                ],
                "target_rps": target_rps,
                "target_rows_per_s": rows_per_s,
                "replicas_for_latency": for_latency,
                "replicas": replicas,
                "limited_by": LOG_LIMIT if replicas > for_latency else LATENCY_LIMIT,
                "log": needs,
                "usd_per_hour": round(hourly, 4),
                # a prediction is one application scored: one row
                "usd_per_million_predictions": round(hourly / (rows_per_s * 3600) * 1e6, 4),
            }
        )
    return min(options, key=lambda o: o["usd_per_hour"], default=None)


def recommend_per_slo(
    measured: list[Measured],
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    log: LogStage | None = None,
) -> list[Option]:
    """One recommendation per SLO, the tightest first (the one the verification checks); an SLO
    no configuration met has none."""
    found = (recommend(measured, slo, grid, prices, log) for slo in sorted(grid["slos_p99_ms"]))
    return [option for option in found if option]


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

    def values(self) -> dict[str, Any]:
        """As deployment.yaml keeps it, in the manifests' own terms."""
        amounts: dict[str, Any] = {"cpu": str(self.cpu), "memory": f"{self.memory_mib}Mi"}
        if self.gpu:
            amounts["nvidia.com/gpu"] = self.gpu
        return {
            "deployment": self.deployment,
            "replicas": self.replicas,
            "requests": amounts,
            "limits": dict(amounts),
            "autoscaling": {
                "minReplicas": self.replicas,
                "maxReplicas": self.max_replicas,
                "targetCPUUtilizationPercentage": self.target_cpu_percent,
            },
        }


@dataclass(frozen=True)
class Deployment:
    """One recommendation as deployed: what it was sized for, and each stage's values."""

    model_tag: str
    slo_p99_ms: float
    configuration: str
    instance: str
    capacity_rps_per_replica: float
    env: dict[str, str]
    stages: tuple[Stage, ...]
    notes: tuple[str, ...] = ()  # what the prediction log did to it (``log_notes``)

    @property
    def has_runner(self) -> bool:
        """A remote-runner recommendation: the runner is a Deployment of its own."""
        return any(s.deployment == RUNNER for s in self.stages)

    def values(self) -> dict[str, Any]:
        """One document of deployment.yaml (the model tag first: readers look it up there)."""
        return {
            "model_tag": self.model_tag,
            "slo_p99_ms": self.slo_p99_ms,
            "configuration": self.configuration,
            "instance": self.instance,
            "env": self.env,
            **{STAGE_KEYS[s.deployment]: s.values() for s in self.stages},
        }


def in_process(env: Mapping[str, str]) -> bool:
    return env.get("CREDIT_RISK_RUNNER_MODE") == "inprocess"


def memory_mib(rss_mib: float) -> int:
    """Peak resident memory with the margin, rounded up to a whole step."""
    return math.ceil(rss_mib * MEMORY_MARGIN / MEMORY_STEP_MIB) * MEMORY_STEP_MIB


def peak_rss_mib(*measured: Measured) -> float:
    """The highest resident memory of any of the measurements (every batch size a pod may be
    sent: the API takes up to 256 applications whatever the mix)."""
    return max(step.server_rss_mb for one in measured for step in one.steps)


def cpu_target(capacity_rps: float, cpu_ms_per_request: float, vcpu: int, headroom: float) -> int:
    """The CPU utilisation of a replica carrying ``headroom`` of its capacity: at the knee the
    server used capacity x CPU per request of its ``vcpu``; a replica at the sizing's operating
    point uses ``headroom`` of that. Scaling out there keeps each replica where the replica count
    was sized, rather than at a CPU figure that the latency SLO was never measured at."""
    at_capacity = capacity_rps * cpu_ms_per_request / (10 * vcpu)
    return max(1, min(100, round(headroom * at_capacity)))


def target_cpu_percent(measured: Measured, slo: float, vcpu: int, headroom: float) -> int:
    """``cpu_target`` of one measurement at its capacity for ``slo``."""
    return cpu_target(measured.capacity(slo), measured.cpu_ms_per_request(slo), vcpu, headroom)


def stage(
    deployment: str,
    peak_rss: float,
    target_cpu: int,
    replicas: int,
    cpu: int,
) -> Stage:
    """A CPU stage: the availability floor on the replicas, memory from the peak RSS."""
    return Stage(
        deployment, max(AVAILABILITY_FLOOR, replicas), cpu, memory_mib(peak_rss), target_cpu
    )


def deployment(
    option: Option,
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> Deployment:
    """The recommendation ``option`` as deployed: the API (its CPU target at the option's
    capacity and CPU per request, those of the applications mix), and for a remote-runner option
    the CPU runner (sized from the run's runner-alone measurement), on the measured instance's
    vCPU; ``option['replicas']`` already carries what the prediction log needs."""
    measured = grouped(configurations)[option["configuration"]].values()
    vcpu = prices["instances"][option["instance"]]["vcpu"]
    slo, headroom, replicas = option["slo_p99_ms"], grid["headroom"], option["replicas"]
    api_cpu = vcpu if in_process(option["env"]) else vcpu // 2
    api_target = cpu_target(
        option["capacity_rps_per_replica"], option["server_cpu_ms_per_request"], vcpu, headroom
    )
    stages = [stage(API, peak_rss_mib(*measured), api_target, replicas, api_cpu)]
    if not in_process(option["env"]):
        runner_target = target_cpu_percent(runner, slo, vcpu, headroom)
        stages.append(stage(RUNNER, peak_rss_mib(runner), runner_target, replicas, vcpu - api_cpu))
    return Deployment(
        model_tag,
        slo,
        option["configuration"],
        option["instance"],
        option["capacity_rps_per_replica"],
        dict(option["env"]),
        tuple(stages),
        tuple(log_notes(option)),
    )


def deployments(
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
    log: LogStage | None = None,
) -> list[Deployment]:
    """Every SLO's recommendation as deployed, the tightest first."""
    return [
        deployment(option, configurations, runner, grid, prices, model_tag)
        for option in recommend_per_slo(configurations, grid, prices, log)
    ]
