"""Sizing arithmetic: capacity at an SLO from ramp steps, the cheapest replica plan, and the
deployment values per stage."""

from __future__ import annotations

from loadtests.size import Measured, Step, deployment_values, recommend

GRID = {"target_rps": 1000, "headroom": 0.5}
PRICES = {"instances": {"cpu-2": {"usd_per_hour": 0.1, "vcpu": 2, "gpu": 0}}}


def ramp(name: str, env: dict, points: list[tuple[float, float, int]]) -> Measured:
    steps = [
        Step(rate, rate, p99 / 2, p99, p99, errors, 1000, 50.0, 300.0)
        for rate, p99, errors in points
    ]
    return Measured(name, "cpu-2", env, steps)


def test_capacity_is_the_last_step_within_slo_and_error_budget():
    measured = ramp("a", {}, [(50, 20, 0), (100, 60, 0), (200, 150, 0), (400, 900, 0)])
    assert measured.capacity(100) == 100
    assert measured.capacity(250) == 200
    failing = ramp("b", {}, [(50, 20, 0), (100, 30, 5)])
    assert failing.capacity(100) == 50


def test_refinement_steps_after_the_ramp_narrow_the_knee():
    coarse = [(100, 40, 0), (135, 60, 0), (182, 400, 0)]
    refined = ramp("r", {}, [*coarse, (157, 80, 0), (169, 130, 0)])
    assert refined.capacity(100) == 157
    assert refined.capacity(250) == 169
    noisy = ramp("n", {}, [*coarse, (157, 120, 0)])  # broke below a rate that held earlier
    assert noisy.capacity(100) == 135


def test_recommendation_takes_the_cheapest_plan_that_carries_the_load():
    slow = ramp("remote", {"CREDIT_RISK_RUNNER_MODE": "remote"}, [(100, 50, 0), (200, 500, 0)])
    fast = ramp("inprocess", {"CREDIT_RISK_RUNNER_MODE": "inprocess"}, [(100, 20, 0), (400, 80, 0)])
    option = recommend([slow, fast], 100, GRID, PRICES)
    assert option["configuration"] == "inprocess"
    assert option["replicas"] == 5  # 1000 / (400 * 0.5)
    assert option["usd_per_million_predictions"] == round(0.5 / (1000 * 3600) * 1e6, 4)
    assert recommend([ramp("never", {}, [(50, 999, 0)])], 100, GRID, PRICES) is None


def test_deployment_values_size_each_stage():
    remote = {
        "slo_p99_ms": 100,
        "configuration": "r",
        "env": {"CREDIT_RISK_RUNNER_MODE": "remote"},
        "instance": "cpu-2",
        "replicas": 3,
    }
    values = deployment_values(remote, PRICES, "credit-risk:mlflow-v1")
    assert values["model_tag"] == "credit-risk:mlflow-v1"
    assert values["api"]["replicas"] == values["runner"]["replicas"] == 3
    assert values["api"]["requests"]["cpu"] == values["runner"]["requests"]["cpu"] == "1"
    inprocess = remote | {"env": {"CREDIT_RISK_RUNNER_MODE": "inprocess"}}
    assert "runner" not in deployment_values(inprocess, PRICES, "t")


def test_locust_users_keep_each_user_rarely_busy():
    from loadtests.size import RATE_PER_LOCUST_USER, locust_users

    assert locust_users(10) == 16
    assert locust_users(600) == 600 / RATE_PER_LOCUST_USER


def test_a_sample_breaks_on_latency_or_error_budget():
    from loadtests.size import Sample

    fine = Sample(1000, 1000, 5, 20, 90, 5.0, {})
    assert not fine.breaks(100)
    assert fine.breaks(50)
    assert Sample(1000, 998, 5, 20, 30, 5.0, {"status 503": 2}).breaks(100)
