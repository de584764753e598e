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

from loadtests import runs
from loadtests.bench import side_by_side as bench
from loadtests.load.load_result import LoadResult, ProcessCpu
from loadtests.load.locust_run import LocustRun
from loadtests.sizing import knee
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.recommend import (
    API,
    RUNNER,
    Stage,
    deployment,
    recommend,
    recommend_per_slo,
)
from loadtests.sizing.report import STEP_COLUMNS, sizing_markdown, write_sizing_report, write_steps
from loadtests.sizing.verify import verification_markdown

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
    assert "| sound | 256 | 300 | 50 | 0 (0) |" in text
    # the server's CPU beside the generator's, all processes and (the busiest one)
    assert "| bound | >= 200 (generator-bound) | >= 200 (generator-bound) | 50 | 0 (97) |" in text


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
