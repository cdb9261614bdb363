"""`wattserve fit` end to end and its error paths: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wattserve.cli import main


def write(tmp_path, df, name="m.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    i = rng.integers(8, 1024, n)
    o = rng.integers(8, 512, n)
    return pd.DataFrame(
        {
            "model": "tiny",
            "system": "cpu",
            "input_tokens": i,
            "output_tokens": o,
            "runtime_s": 0.1 + 0.001 * i + 0.02 * o,
            "total_energy_j": 3 + 0.02 * i + 0.5 * o,
        }
    )


def ok(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def test_fit_writes_fits_and_show_prints_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    src = write(tmp_path, table())
    out = tmp_path / "fits.json"
    ok(["fit", str(src), "-o", str(out), "--select", "best", "--min-rows", "5"])
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1
    assert {f["quantity"] for f in doc["fits"]} == {"energy_j", "runtime_s"}
    assert all(f["cv_r2"] > 0.99 for f in doc["fits"])
    capsys.readouterr()
    ok(["fit", "show", str(out), "--params"])
    shown = capsys.readouterr().out
    assert "tiny" in shown and "c1_prefill=" in shown and "J/input token" in shown


def test_fit_reads_bench_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"config": {"model": "tiny", "device": "cpu0"}, "environment": {}})
    )
    rng = np.random.default_rng(1)
    lines = []
    for k in range(30):
        i, o = int(rng.integers(8, 500)), int(rng.integers(8, 300))
        lines.append(
            json.dumps(
                {
                    "request_id": str(k),
                    "model": "tiny",
                    "input_tokens": i,
                    "output_tokens": o,
                    "sent_s": 10.0,
                    "end_s": 10.0 + 0.01 * o,
                    "error": None,
                    "energy_j": 0.5 * o,
                }
            )
        )
    lines.append(
        json.dumps(
            {
                "request_id": "x",
                "model": "tiny",
                "input_tokens": 5,
                "output_tokens": 0,
                "sent_s": 1.0,
                "end_s": 2.0,
                "error": "timeout",
                "energy_j": None,
            }
        )
    )
    (run_dir / "requests.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "f.json"
    ok(
        [
            "fit",
            str(run_dir),
            "-o",
            str(out),
            "--form",
            "physical",
            "--min-rows",
            "5",
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fits = json.loads(out.read_text())["fits"]
    assert {(f["model"], f["device"]) for f in fits} == {("tiny", "cpu0")}
    assert all(f["n_rows"] == 30 for f in fits)  # the errored request is left out


def test_missing_column_is_named(tmp_path, capsys):
    src = write(tmp_path, table().drop(columns=["total_energy_j"]))
    code, err = run(["fit", str(src), "-o", str(tmp_path / "f.json")], capsys)
    assert code == 2 and "missing columns" in err and "energy_j" in err and "Traceback" not in err


def test_column_mapping_flags(tmp_path):
    df = table().rename(columns={"input_tokens": "prompt_len", "total_energy_j": "joules"})
    out = tmp_path / "f.json"
    ok(
        [
            "fit",
            str(write(tmp_path, df)),
            "-o",
            str(out),
            "--input-col",
            "prompt_len",
            "--energy-col",
            "joules",
            "--min-rows",
            "5",
            "--form",
            "physical",
        ]
    )
    assert len(json.loads(out.read_text())["fits"]) == 2


def test_nan_and_nonpositive_rows_are_named(tmp_path, capsys):
    df = table()
    df.loc[3, "runtime_s"] = np.nan
    code, err = run(["fit", str(write(tmp_path, df)), "-o", str(tmp_path / "f.json")], capsys)
    assert code == 2 and "'runtime_s'" in err and "rows 5" in err  # data row 3 = line 5 of the file
    df = table()
    df.loc[7, "output_tokens"] = 0
    code, err = run(["fit", str(write(tmp_path, df)), "-o", str(tmp_path / "f.json")], capsys)
    assert code == 2 and "must be > 0" in err and "rows 9" in err


def test_fewer_rows_than_parameters(tmp_path, capsys):
    code, err = run(
        [
            "fit",
            str(write(tmp_path, table(n=4))),
            "-o",
            str(tmp_path / "f.json"),
            "--min-rows",
            "1",
            "--form",
            "context",
        ],
        capsys,
    )
    assert code == 2 and "4 rows, fewer than the 5 parameters" in err and "tiny @ cpu" in err
    code, err = run(
        ["fit", str(write(tmp_path, table(n=4))), "-o", str(tmp_path / "f.json")], capsys
    )
    assert code == 2 and "no (model, device) group has enough rows" in err


def test_unknown_form_and_loss(tmp_path, capsys):
    src = str(write(tmp_path, table()))
    code, err = run(
        ["fit", src, "--form", "cubic", "--min-rows", "5", "-o", str(tmp_path / "f.json")], capsys
    )
    assert code == 2 and "unknown form 'cubic'" in err
    code, err = run(
        ["fit", src, "--loss", "huber", "--min-rows", "5", "-o", str(tmp_path / "f.json")], capsys
    )
    assert code == 2 and "unknown loss" in err


def test_bad_fits_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, err = run(["fit", "show", str(bad)], capsys)
    assert code == 2 and "not valid JSON" in err


def test_one_request_shape_warns_once_that_cv_cannot_judge_other_shapes(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "250")  # the warning on one line
    rng = np.random.default_rng(1)
    one = table(16).assign(input_tokens=128, output_tokens=64)
    one["total_energy_j"] = 40 + rng.normal(0, 1, 16)
    ok(["fit", str(write(tmp_path, one)), "-o", str(tmp_path / "f.json"), "--min-rows", "1"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "one (input, output) shape" in line]
    assert len(lines) == 1 and "tiny@cpu" in lines[0] and "other shapes" in lines[0], out
    ok(["fit", str(write(tmp_path, table())), "-o", str(tmp_path / "g.json"), "--min-rows", "5"])
    assert "one (input, output) shape" not in capsys.readouterr().out
