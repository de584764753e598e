"""From measured capacities to a deployment: per SLO, the configuration and replica count that
carry the target load at the least cost (prices from loadtests/prices.yaml), and what the
Kubernetes manifests need per stage for it. Pure arithmetic over ``knee.Measured``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from loadtests.knee import Measured

Option = dict[str, Any]  # one recommendation, as recommendation.json keeps it


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


def deployment_values(option: Option, prices: Mapping[str, Any], model_tag: str) -> dict[str, Any]:
    """What the Kubernetes manifests need per stage, for one recommendation."""
    vcpu = prices["instances"][option["instance"]]["vcpu"]
    in_process = option["env"].get("CREDIT_RISK_RUNNER_MODE") == "inprocess"
    api_cpu = vcpu if in_process else vcpu // 2
    values: dict[str, Any] = {
        "model_tag": model_tag,
        "slo_p99_ms": option["slo_p99_ms"],
        "configuration": option["configuration"],
        "env": option["env"],
        "api": stage(option["replicas"], api_cpu),
    }
    if not in_process:
        values["runner"] = stage(option["replicas"], vcpu - api_cpu)
    return values


def stage(replicas: int, cpu: int) -> dict[str, Any]:
    """One deployment's replicas, CPU request and autoscaling floor and target."""
    return {
        "replicas": replicas,
        "requests": {"cpu": str(cpu)},
        "autoscaling": {"minReplicas": replicas, "targetCPUUtilizationPercentage": 70},
    }
