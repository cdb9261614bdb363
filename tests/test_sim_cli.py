"""``wattserve simulate`` end to end: the preset table as JSON, a trace file, and bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd

from wattserve.cli import main


def run_cli(args, capsys):
    """Run the CLI in-process: (returncode, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_preset_writes_the_table_as_json(tmp_path, capsys):
    out = tmp_path / "zhu.json"
    try:
        main(
            [
                "simulate",
                "--preset",
                "zhu-synthetic",
                "--seeds",
                "2",
                "--num-prompts",
                "400",
                "--alpha",
                "0.5",
                "--ratio",
                "100",
                "--format",
                "json",
                "--output",
                str(out),
            ]
        )
    except SystemExit as exc:  # typer's standalone mode exits 0 after a command
        assert exc.code in (0, None)
    data = json.loads(out.read_text())
    assert data["config"]["preset"] == "zhu-synthetic" and data["config"]["capacity"] == 8
    combos = {(r["variant"], r["policy"], r["selector"]) for r in data["rows"]}
    assert len(combos) == 2 * 5 * 4  # variants x policies x {model1, model2, mux@0.8, mux@1}
    assert all(r["seeds"] == 2 and r["mean_cost"] > 0 for r in data["rows"])
    s = {(x["variant"], x["accuracy"]): x for x in data["summary"]}
    assert s[("online", 1.0)]["improvement"] > 1.0


def test_trace_file_replay_prints_a_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    q = np.minimum(np.floor(30 * rng.power(0.6, 3000)), 29).astype(int)
    base = rng.choice([1.0, 50.0], size=(30, 2))
    df = pd.DataFrame(
        {"query": [f"q{i}" for i in q], "cost_big": base[q, 0], "cost_small": base[q, 1]}
    )
    path = tmp_path / "trace.csv"
    df.to_csv(path, index=False)
    res = run_cli(
        [
            "simulate",
            "--trace",
            str(path),
            "--capacity",
            "5",
            "--accuracy",
            "1.0",
            "--format",
            "json",
        ],
        capsys,
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["config"]["models"] == ["big", "small"]
    cost = {(r["variant"], r["policy"], r["selector"]): r["mean_cost"] for r in data["rows"]}
    no_cache = float((np.minimum(base[q, 0], base[q, 1])).sum())
    assert cost[("online", "lec", "mux@1")] < no_cache
    assert cost[("online", "lec", "mux@1")] < cost[("online", "lec", "model1")]


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    res = run_cli(["simulate", "--preset", "nope"], capsys)
    assert res.returncode == 2 and "unknown preset" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["simulate", "--trace", str(tmp_path / "missing.csv")], capsys)
    assert res.returncode == 2 and "not found" in res.stderr
    res = run_cli(["simulate", "--preset", "zhu-synthetic", "--policy", "arc"], capsys)
    assert res.returncode == 2 and "unknown policy" in res.stderr
    res = run_cli(["simulate", "--preset", "zhu-synthetic", "--alpha", "0.8,high"], capsys)
    assert res.returncode == 2 and "--alpha 'high'" in res.stderr and "Traceback" not in res.stderr


def test_list_flags_take_commas_and_repeats_alike(tmp_path, capsys):
    base = ["simulate", "--preset", "zhu-synthetic", "--seeds", "1", "--num-prompts", "200"]
    base += ["--variant", "online", "--accuracy", "1", "--format", "json"]
    comma = run_cli([*base, "--policy", "lec,lfu", "--alpha", "0.5,0.8", "--ratio", "100"], capsys)
    repeat = run_cli(
        [*base, "--policy", "lec", "--policy", "lfu", "--alpha", "0.5", "--alpha", "0.8"]
        + ["--ratio", "100"],
        capsys,
    )
    assert comma.returncode == 0 and repeat.returncode == 0, comma.stderr + repeat.stderr
    rows = [json.loads(r.stdout)["rows"] for r in (comma, repeat)]
    assert {(r["alpha"], r["policy"]) for r in rows[0]} == {
        (a, p) for a in (0.5, 0.8) for p in ("lec", "lfu")
    }
    assert rows[0] == rows[1]
