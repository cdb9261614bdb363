"""`wattserve plan` end to end on synthetic fits (no shared data needed), and its error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wattserve.cli import main
from wattserve.fit import save_fits
from wattserve.fit.forms import FORMS
from wattserve.types import ModelFit


def ok(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)


def fail(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


@pytest.fixture
def files(tmp_path):
    fits = []
    for model, scale in (("small", 1.0), ("big", 4.0)):
        for dev, dscale in (("a100", 1.0), ("v100", 1.8)):
            for q, base in (("energy_j", (1, 0.01, 0.3, 0)), ("runtime_s", (0.05, 1e-4, 0.02, 0))):
                c = tuple(x * scale * dscale for x in base)
                fits.append(
                    ModelFit(
                        model,
                        dev,
                        q,
                        "physical",
                        FORMS["physical"].params,
                        c,
                        n_rows=50,
                        input_range=(1, 4096),
                        output_range=(1, 4096),
                    )
                )
    save_fits(fits, tmp_path / "fits.json")
    (tmp_path / "targets.yaml").write_text(
        "fits: fits.json\ntargets:\n"
        "  - {name: s-a100, model: small, device: a100, quality: 0.4, slots: 2}\n"
        "  - {name: s-v100, model: small, device: v100, quality: 0.4, slots: 2}\n"
        "  - {name: b-a100, model: big, device: a100, quality: 0.8, slots: 1}\n"
    )
    rng = np.random.default_rng(0)
    lines = [
        json.dumps(
            {
                "id": f"q{k}",
                "input_tokens": int(rng.integers(10, 2000)),
                "max_tokens": int(rng.integers(10, 500)),
                **({"deadline_s": 1000.0} if k % 3 == 0 else {}),
            }
        )
        for k in range(300)
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_plan_writes_schedule_and_baselines(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    out = files / "schedule.json"
    ok(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--quality-target",
            "0.6",
            "-o",
            str(out),
            "--export-requests",
            str(files / "req"),
        ]
    )
    doc = json.loads(out.read_text())
    assert len(doc["assignment"]) == 300 and doc["mean_quality"] >= 0.6 - 1e-9
    per_query = doc["queries"]
    assert [q["target"] for q in per_query] == [doc["assignment"][q["id"]] for q in per_query]
    assert sum(q["energy_j"] for q in per_query) == pytest.approx(doc["energy_j"])
    assert np.mean([q["quality"] for q in per_query]) == pytest.approx(doc["mean_quality"])
    assert doc["solver"] == "milp" and doc["optimality_gap"] < 1e-5
    names = [r["plan"] for r in doc["baselines"]]
    assert names[0].startswith("plan") and {
        "round-robin",
        "random",
        "fastest",
        "only b-a100",
    } <= set(names)
    assert all(r["energy_j"] > doc["energy_j"] for r in doc["baselines"][1:] if r["meets_quality"])
    exported = sum(
        len((files / "req" / f"{t}.jsonl").read_text().splitlines())
        for t in ("s-a100", "s-v100", "b-a100")
    )
    assert exported == 300
    assert "energy J" in capsys.readouterr().out


def test_weighted_sweep(files):
    out = files / "sweep.json"
    ok(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--objective",
            "weighted",
            "--zeta",
            "0,1",
            "-o",
            str(out),
        ]
    )
    sweep = json.loads(out.read_text())["sweep"]
    assert [s["zeta"] for s in sweep] == [0.0, 1.0]
    assert (
        sweep[0]["mean_quality"] == pytest.approx(0.8)
        and sweep[1]["energy_j"] < sweep[0]["energy_j"]
    )


def test_queries_command(files, shared_data):
    out = files / "gen.csv"
    ok(
        [
            "plan",
            "queries",
            str(shared_data / "energy" / "wilkins_sweeps.csv"),
            "-n",
            "200",
            "-o",
            str(out),
        ]
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "id,input_tokens,output_tokens" and len(lines) == 201


def test_infeasible_plan_explains(files, capsys):
    code, err = fail(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--quality-target",
            "0.95",
            "-o",
            str(files / "s.json"),
        ],
        capsys,
    )
    assert code == 2 and "best achievable mean quality 0.8" in err and "Traceback" not in err


def test_bad_inputs(files, capsys):
    (files / "bad.jsonl").write_text(json.dumps({"id": "a", "input_tokens": 5}) + "\n")
    code, err = fail(
        ["plan", "--queries", str(files / "bad.jsonl"), "--targets", str(files / "targets.yaml")],
        capsys,
    )
    assert code == 2 and "missing column(s) output_tokens" in err
    (files / "t2.yaml").write_text("fits: fits.json\ntargets:\n  - {model: tiny, device: cpu}\n")
    code, err = fail(
        ["plan", "--queries", str(files / "q.jsonl"), "--targets", str(files / "t2.yaml")], capsys
    )
    assert code == 2 and "no energy_j fit for tiny @ cpu" in err
    code, err = fail(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--solver",
            "simplex",
        ],
        capsys,
    )
    assert code == 2 and "unknown solver" in err


def test_exported_requests_load_as_bench_trace(files):
    bench = pytest.importorskip("wattserve.bench.workloads")
    ok(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--quality-target",
            "0.6",
            "-o",
            str(files / "s.json"),
            "--export-requests",
            str(files / "req"),
        ]
    )
    path = files / "req" / "b-a100.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    w = bench.trace_workload(path, None, 16)
    assert len(w.requests) == len(rows) > 0
    assert sorted(r.max_tokens for r in w.requests) == sorted(r["max_tokens"] for r in rows)
    assert sorted(r.input_tokens for r in w.requests) == sorted(r["input_tokens"] for r in rows)


def test_thesis_sweep_writes_assignment_share_and_instances(files):
    (files / "thesis.yaml").write_text(
        "fits: fits.json\ntargets:\n"
        "  - {name: s-a100, model: small, device: a100, quality: 0.4, min_share: 0.1}\n"
        "  - {name: s-v100, model: small, device: v100, quality: 0.4}\n"
        "  - {name: b-a100, model: big, device: a100, quality: 0.8, gpus_per_instance: 2}\n"
    )
    out = files / "sweep.json"
    ok(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "thesis.yaml"),
            "--objective",
            "weighted",
            "--zeta",
            "0:1:0.25",
            "--accuracy-weighting",
            "tokens",
            "--gpu-budget",
            "a100=3",
            "-o",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert doc["normalise"] == "global" and doc["accuracy_weighting"] == "tokens"
    assert [s["zeta"] for s in doc["sweep"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for s in doc["sweep"]:
        assert len(s["assignment"]) == 300
        assert s["share"]["s-a100"] >= 0.1 and sum(s["share"].values()) == pytest.approx(1.0)
        assert s["gpus_used"]["a100"] <= 3  # one 'big' instance (2 GPUs) + one 'small' (1)
        counts = {t: list(s["assignment"].values()).count(t) for t in s["share"]}
        assert counts == {t: round(v * 300) for t, v in s["share"].items()}
    assert {b["plan"] for b in doc["baselines"]} >= {"round-robin", "random"}


def test_energy_plan_under_gpu_budget_and_min_share(files):
    out = files / "s.json"
    ok(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            "--min-share",
            "0.2",
            "--gpu-budget",
            "5",
            "--quality-target",
            "0.5",
            "-o",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert min(doc["share"].values()) >= 0.2 and sum(doc["gpus_used"].values()) <= 5
    assert doc["mean_quality"] >= 0.5 - 1e-9 and "GPU budget system 5" in doc["objective"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--normalise", "minmax"], "--normalise must be one of global, per-query"),
        (["--accuracy-weighting", "words"], "--accuracy-weighting must be one of none, tokens"),
        (["--gpu-budget", "many"], "--gpu-budget must be N or DEVICE=N"),
        (["--gpu-budget", "tpu=4"], "GPU budget for device 'tpu': no target on it"),
        (["--objective", "weighted", "--zeta", "0:2:0.5"], "--zeta values must lie in [0, 1]"),
        (["--objective", "weighted", "--zeta", "a,b"], "--zeta must be comma-separated"),
        (["--min-share", "0.5"], "min share: the targets' minimum shares need 450 queries"),
    ],
)
def test_bad_thesis_options(files, capsys, args, message):
    code, err = fail(
        [
            "plan",
            "--queries",
            str(files / "q.jsonl"),
            "--targets",
            str(files / "targets.yaml"),
            *args,
            "-o",
            str(files / "s.json"),
        ],
        capsys,
    )
    assert code != 0 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("min_share: 1.5", "min_share must be between 0 and 1"),
        ("gpus_per_instance: 1.5", "is not a whole number"),
        ("gpus_per_instance: 0", "gpus_per_instance must be >= 1"),
    ],
)
def test_bad_target_constraints(files, capsys, entry, message):
    (files / "bad.yaml").write_text(
        f"fits: fits.json\ntargets:\n  - {{model: small, device: a100, {entry}}}\n"
    )
    code, err = fail(
        ["plan", "--queries", str(files / "q.jsonl"), "--targets", str(files / "bad.yaml")],
        capsys,
    )
    assert code != 0 and message in err and "Traceback" not in err
