"""From measured capacities to a deployment: per SLO, the configuration and replica count that
carry the target load at the least cost (prices from loadtests/prices.yaml), and the one set of
deployment values that follows from a recommendation (``deployment``): per stage, replicas, CPU
and memory, and the autoscaler's floor, ceiling and CPU target. The run's deployment.yaml
(``report``) and the Kubernetes profiles (``profiles``) both write these values and compute none
of their own: when each had its own arithmetic, one run wrote a 70% autoscaler target into
deployment.yaml and 54% into the profile it deployed. Pure arithmetic over ``knee.Measured``.

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

from loadtests.sizing.knee import Measured

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


def recommend(
    measured: list[Measured], slo: float, grid: Mapping[str, Any], prices: Mapping[str, Any]
) -> Option | None:
    """The configuration and replica count carrying the target load at the least cost."""
    options = []
    for result in measured:
        capacity = result.capacity(slo)
        if capacity <= 0 or result.instance not in prices["instances"]:
            continue
        replicas = math.ceil(grid["target_rps"] / (capacity * grid["headroom"]))
        hourly = replicas * prices["instances"][result.instance]["usd_per_hour"]
        options.append(
            {
                "slo_p99_ms": slo,
                "configuration": result.name,
                "env": result.env,
                "instance": result.instance,
                "capacity_rps_per_replica": capacity,
                "server_cpu_ms_per_request": result.cpu_ms_per_request(slo),
                "replicas": replicas,
                "usd_per_hour": round(hourly, 4),
                "usd_per_million_predictions": round(hourly / (grid["target_rps"] * 3600) * 1e6, 4),
            }
        )
    return min(options, key=lambda o: o["usd_per_hour"], default=None)


def recommend_per_slo(
    measured: list[Measured], grid: Mapping[str, Any], prices: Mapping[str, Any]
) -> list[Option]:
    """One recommendation per SLO, the tightest first (the one the verification checks); an SLO
    no configuration met has none."""
    found = (recommend(measured, slo, grid, prices) for slo in sorted(grid["slos_p99_ms"]))
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


def deployment(
    option: Option,
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> Deployment:
    """The recommendation ``option`` as deployed: the API, and for a remote-runner option the
    CPU runner (sized from the run's runner-alone measurement), on the measured instance's
    vCPU."""
    measured = by_name(configurations, option["configuration"])
    vcpu = prices["instances"][option["instance"]]["vcpu"]
    slo, headroom, replicas = option["slo_p99_ms"], grid["headroom"], option["replicas"]
    api_cpu = vcpu if in_process(option["env"]) else vcpu // 2
    stages = [stage(API, measured, slo, replicas, api_cpu, vcpu, headroom)]
    if not in_process(option["env"]):
        stages.append(stage(RUNNER, runner, slo, replicas, vcpu - api_cpu, vcpu, headroom))
    return Deployment(
        model_tag,
        slo,
        option["configuration"],
        option["instance"],
        option["capacity_rps_per_replica"],
        dict(option["env"]),
        tuple(stages),
    )


def deployments(
    configurations: list[Measured],
    runner: Measured,
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> list[Deployment]:
    """Every SLO's recommendation as deployed, the tightest first."""
    return [
        deployment(option, configurations, runner, grid, prices, model_tag)
        for option in recommend_per_slo(configurations, grid, prices)
    ]
