"""The runner sweep's queue simulation, its command (`make runner-sweep`), and the per-device
pricing built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loadtests.runs import RESULTS
from loadtests.sizing import device_sizing, runner_sweep
from loadtests.sizing.runner_sweep import ServiceTimes, capacity_rows_per_s, simulate_p99_ms
from model_artifact.network import TabularMLP

PRICES = {
    "instances": {
        "cpu-2": {"usd_per_hour": 0.1, "vcpu": 2, "gpu": 0},
        "gpu-h100": {"usd_per_hour": 3.6, "vcpu": 16, "gpu": 1},
    }
}


def linear_service(fixed_s: float, per_row_s: float) -> ServiceTimes:
    return ServiceTimes({b: np.array([fixed_s + per_row_s * b]) for b in (1, 8, 64, 512)})


def test_an_idle_runner_answers_in_its_service_time_plus_the_wait():
    service = linear_service(0.001, 0.0)
    assert simulate_p99_ms(service, 1, 64, 0.0, 2000, 0) == pytest.approx(1.0, abs=0.05)
    assert simulate_p99_ms(service, 1, 64, 0.005, 2000, 0) == pytest.approx(6.0, abs=0.1)


def test_batching_lifts_capacity_above_one_row_per_call():
    service = linear_service(0.001, 0.00001)  # 1 ms per call: 1,000 rows/s unbatched
    batched = capacity_rows_per_s(service, 64, 0.0, 100.0)
    assert 1000 < batched <= service.ceiling(64)
    assert capacity_rows_per_s(service, 1, 0.0, 100.0) < 1000


def test_an_overloaded_queue_breaks_the_slo():
    service = linear_service(0.001, 0.0)
    assert simulate_p99_ms(service, 2000, 1, 0.0, 2000, 0) > 100


def fake_sweep(cpu_rows: float, gpu_rows: float) -> dict:
    timings = [
        {"device": d, "model": "m", "batch": 1, "p50_ms": 0.2, "p99_ms": 0.3, "rows_per_s": 1}
        for d in ("cpu", "cuda")
    ]
    capacities = [
        {
            "device": d,
            "model": "m",
            "max_batch_size": b,
            "max_wait_ms": 0.0,
            "slo_p99_ms": 100.0,
            "rows_per_s": rows * b / 128,
        }
        for d, rows in (("cpu", cpu_rows), ("cuda", gpu_rows))
        for b in (32, 128)
    ]
    return {"torch_threads": 1, "timings": timings, "capacities": capacities}


def test_best_configuration_and_cost_per_device():
    rows = device_sizing.best_rows(fake_sweep(1000, 100_000), PRICES, headroom=0.5)
    cpu, cuda = rows
    assert (cpu["device"], cpu["max_batch_size"], cpu["rows_per_s"]) == ("cpu", 128, 1000)
    assert cpu["usd_per_million_rows"] == pytest.approx(0.05 / (1000 * 0.5 * 3600) * 1e6)
    assert cuda["usd_per_million_rows"] == pytest.approx(3.6 / (100_000 * 0.5 * 3600) * 1e6)


@pytest.mark.parametrize(("gpu_rows", "winner"), [(100_000, "cuda"), (20_000, "cpu")])
def test_verdict_names_the_cheaper_device(gpu_rows, winner):
    rows = device_sizing.best_rows(fake_sweep(1000, gpu_rows), PRICES, headroom=0.7)
    (verdict,) = device_sizing.device_verdicts(rows)
    assert f"**{winner}**" in verdict


def test_stored_sweeps_render(tmp_path):
    sweeps = device_sizing.load_sweeps(RESULTS)
    assert sweeps, "the GPU sweep measured on a lent H100 is kept in loadtests/results/"
    text = "\n".join(device_sizing.markdown(sweeps, PRICES, 0.7))
    assert "cuda" in text
    assert "served" in text
    device_sizing.plot(sweeps, PRICES, tmp_path / "runner.png")
    assert (tmp_path / "runner.png").stat().st_size > 0


def test_the_sweep_reads_the_served_networks_width_and_needs_one():
    network = TabularMLP(37, (64,)).eval()
    assert runner_sweep.input_width(network) == 37
    exported = torch.export.export(network, (torch.zeros(2, 37),)).module()  # as served
    assert runner_sweep.input_width(exported) == 37
    with pytest.raises(SystemExit):
        runner_sweep.main([])  # neither --model-dir nor --width
    assert runner_sweep.default_out().parent == runner_sweep.runs.REPORTS
    assert runner_sweep.default_out().name.startswith("runner-sweep-")  # device_sizing's glob
