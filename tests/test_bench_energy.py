"""Per-request joules in benchmark records, and `wattserve fit RUN` on them (mock server)."""

from __future__ import annotations

import json

import pytest

from wattserve.bench import store
from wattserve.bench.benchmark import load_points, run_benchmark
from wattserve.bench.config import BenchConfig
from wattserve.cli import main
from wattserve.energy.attribution import attribute_phases, charge_at_end
from wattserve.energy.replay import ReplayMeter
from wattserve.engines.mock_server import MockServer
from wattserve.fit.io import run_device
from wattserve.types import Completion, EnergyReading, Measurement

CPU = "Test CPU 9000"


@pytest.fixture(autouse=True)
def _small_environment(monkeypatch):
    """A fixed environment (collecting the real one imports torch: seconds)."""
    monkeypatch.setattr(
        "wattserve.bench.benchmark.environment",
        lambda: {"cpu": {"model": CPU}, "gpus": []},
    )


def replay_meter() -> ReplayMeter:
    """A recorded CPU counter whose power steps between 5 W and 20 W every 50 ms."""
    readings, joules = [], 0.0
    for k in range(4001):  # 200 s
        readings.append(EnergyReading(k * 0.05, {"cpu": joules}, {"cpu": "replay"}))
        joules += (5.0 if k % 2 else 20.0) * 0.05
    return ReplayMeter(readings)


def grid_run(tmp_path, method: str = "active_time"):
    with MockServer(follow_max_tokens=True, token_delay_ms=2.0, ttft_ms=3.0) as srv:
        cfg = BenchConfig(
            model="mock",
            backend="openai",
            base_url=srv.url,
            input_lens=[4, 16, 32],
            output_lens=[2, 6, 12],
            num_prompts=4,
            max_concurrencies=[2],
            energy_interval_s=0.02,
            energy_attribution=method,
            result_dir=str(tmp_path),
            label="energy",
        )
        rec = run_benchmark(cfg, meter=replay_meter())
    return tmp_path / rec.run_id


def test_every_ok_record_has_joules_that_add_up_to_the_window(tmp_path):
    rdir = grid_run(tmp_path)
    records = store.read_requests(rdir / store.REQUESTS)
    assert len(records) == 9 * 4 and all(r["error"] is None for r in records)
    points = {p.label: p for p in load_points(rdir)}
    assert set(points) == {f"in{i}-out{o}-c2" for i in (4, 16, 32) for o in (2, 6, 12)}
    for label, point in points.items():
        mine = [r for r in records if r["point"] == label]
        assert len(mine) == 4
        for r in mine:
            assert r["energy_j"] > 0 and r["energy_source"] == "replay"
            assert r["energy_split"] == "active_time"
            assert r["prefill_energy_j"] + r["decode_energy_j"] == pytest.approx(r["energy_j"])
            assert r["prefill_energy_j"] > 0 and r["decode_energy_j"] > 0
        whole = next(m for m in point.measurements if m.window == "whole")
        assert sum(r["energy_j"] for r in mine) == pytest.approx(whole.total_j, rel=1e-6)
    data = json.loads((rdir / store.RUN_JSON).read_text())
    assert data["energy_attribution"]["method"] == "active_time"
    assert data["config"]["energy_attribution"] == "active_time"
    assert len(data["grid"]) == 9


def test_tokens_split_follows_output_tokens(tmp_path):
    rdir = grid_run(tmp_path, "tokens")
    records = store.read_requests(rdir / store.REQUESTS)
    for label in {r["point"] for r in records}:
        mine = [r for r in records if r["point"] == label]
        per_token = {round(r["energy_j"] / r["output_tokens"], 9) for r in mine}
        assert all(r["energy_split"] == "tokens" and r["prefill_energy_j"] is None for r in mine)
        assert len(per_token) == 1  # requests all inside the window: J/token is shared


def test_fit_run_directory_gives_energy_and_runtime_with_the_device(tmp_path, capsys):
    rdir = grid_run(tmp_path)
    out = tmp_path / "fits.json"
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(rdir), "-o", str(out), "--min-rows", "10", "--folds", "3"])
    assert exc.value.code in (0, None), capsys.readouterr().err
    fits = json.loads(out.read_text())["fits"]
    assert {(f["model"], f["device"], f["quantity"]) for f in fits} == {
        ("mock", CPU, "energy_j"),
        ("mock", CPU, "runtime_s"),
    }
    assert all(f["n_rows"] == 36 for f in fits)


def test_phases_add_up_by_hand():
    # 10 W for 10 s; A [0,4] first token at 1, B [2,6] first token at 5
    meas = Measurement("whole", 0.0, 10.0, {"gpu0": 100.0}, {"gpu0": "nvml"})
    a = Completion("A", "m", "", 1, 1, 0.0, 1.0, 4.0)
    b = Completion("B", "m", "", 1, 1, 2.0, 5.0, 6.0)
    att, parts = attribute_phases([a, b], meas, idle="unattributed")
    # A: prefill [0,1] 10 J, decode [1,2] 10 J + [2,4] shared 10 J; B: [2,4] 10 J + [4,5] 10 J
    assert (parts["A"].prefill_j, parts["A"].decode_j) == (pytest.approx(10.0), pytest.approx(20))
    assert (parts["B"].prefill_j, parts["B"].decode_j) == (pytest.approx(20.0), pytest.approx(10))
    assert att.per_request_j == {"A": pytest.approx(30.0), "B": pytest.approx(30.0)}
    assert att.idle_j == pytest.approx(40.0)


def test_charge_at_end_equals_the_whole_run_split():
    """The live gateway's charge (computed at each end) is the benchmark's share."""
    readings = [
        EnergyReading(t * 0.5, {"gpu0": 7.0 * t + (t % 3)}, {"gpu0": "nvml"}) for t in range(41)
    ]
    # A, B, C, D overlap in turn (send, first token, end); power varies between readings
    spans = [("A", 0.2, 1.0, 3.0), ("B", 1.0, 2.5, 4.0), ("C", 2.0, 2.2, 2.6), ("D", 3.5, 4.0, 6.0)]
    comps = [Completion(r, "m", "", 1, 1, s, f, e) for r, s, f, e in spans]
    _, whole = attribute_phases(comps, readings, window=(0.0, 20.0), idle="unattributed")
    for c in comps:
        at_end = [
            d
            if d.end_s <= c.end_s
            else Completion(d.request_id, "m", "", 1, 1, d.sent_s, None, c.end_s)
            for d in comps
            if d.sent_s < c.end_s and d.end_s > c.sent_s
        ]
        live = charge_at_end(c, at_end, readings)
        assert live.energy_j == pytest.approx(whole[c.request_id].energy_j)
        assert live.prefill_j == pytest.approx(whole[c.request_id].prefill_j)


@pytest.mark.parametrize(
    ("meta", "device"),
    [
        ({"config": {"device": "cpu0"}, "environment": {"cpu": {"model": CPU}}}, "cpu0"),
        (
            {"meter": "NvmlMeter", "environment": {"cpu": {"model": CPU}, "gpus": [{"name": "H"}]}},
            "H",
        ),
        ({"meter": "ModeledCpuMeter", "environment": {"cpu": {"model": CPU}, "gpus": ["H"]}}, CPU),
        ({"config": {"backend": "local"}, "environment": {"cpu": {"model": CPU}}}, CPU),
        ({"meter": "NullMeter", "environment": {"cpu": {"model": CPU}, "gpus": ["H"]}}, "H"),
        ({"environment": {}}, None),
    ],
)
def test_run_device_from_environment(meta, device):
    assert run_device(meta) == device
