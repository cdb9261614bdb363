"""ML.ENERGY v2 configurations as sweep points and the leaderboard's default view, checked on
rows whose answer is worked out by hand (and on the given CSV where it is present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattserve.bench.pareto import pareto_mask, recommend
from wattserve.cli import main
from wattserve.mlenergy import default_view, excluded_groups, mark_frontier, read_configs

CSV = Path(__file__).resolve().parents[1].parent / "shared/data/energy/mlenergy_v2_configs.csv"
HEADER = (
    "task,gpu,model,params_b,max_num_seqs,tp,pp,num_gpus,energy_per_req_j,avg_tpot_s,"
    "token_tput_tok_s,avg_output_tokens,avg_batch_size,max_batch_size,"
    "energy_per_output_token_j,file"
)
# task, gpu, model, bs, energy/request, avg TPOT, tok/s, J/token
ROWS = [
    ("chat", "G1", "A", 32, 72.0, 0.030, 1000.0, 0.150),
    ("chat", "G1", "A", 64, 50.0, 0.204, 1500.0, 0.100),  # rounds to 0.20: within the limit
    ("chat", "G1", "A", 128, 40.0, 0.206, 1800.0, 0.080),  # rounds to 0.21: out
    ("chat", "G1", "B", 32, 30.0, 0.300, 900.0, 0.060),  # B on G1: nothing within the limit
    ("chat", "G2", "A", 16, 10.0, 0.150, 700.0, 0.020),
    ("chat", "G2", "A", 8, 10.0, 0.100, 600.0, 0.020),  # tie on energy: the smaller batch
    ("code", "G1", "A", 32, 9.0, 0.050, 800.0, 0.030),  # another task: its own group
]


def write_csv(tmp_path: Path, rows=ROWS, header: str = HEADER) -> Path:
    lines = [header]
    for task, gpu, model, bs, e, tpot, tput, jpt in rows:
        lines.append(
            f"{task},{gpu},{model},7,{bs},1,1,1,{e},{tpot},{tput},500,{bs - 0.5},{bs},{jpt},x.json"
        )
    path = tmp_path / "configs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_become_sweep_points(tmp_path):
    points = read_configs(write_csv(tmp_path))
    p = points[1]
    assert p["point"] == "chat/G1/A/bs64+tp1+pp1" and p["backend"] == "vllm"
    assert p["max_concurrency"] == 64 and p["device"] == "G1" and p["model"] == "A"
    assert p["tok_s_per_user"] == pytest.approx(1 / 0.204)
    assert p["tok_s_per_device"] == 1500.0 and p["j_per_token"] == 0.1
    assert p["energy_per_req_j"] == 50.0 and p["output_tokens"] == 500.0


def test_default_view_by_hand(tmp_path):
    points = read_configs(write_csv(tmp_path))
    view = default_view(points)
    got = {(r["task"], r["device"], r["model"]): r["max_concurrency"] for r in view}
    assert got == {("chat", "G1", "A"): 64, ("chat", "G2", "A"): 8, ("code", "G1", "A"): 32}
    assert [r["energy_per_req_j"] for r in view] == [50.0, 10.0, 9.0]
    assert excluded_groups(points) == [("chat", "B", "G1")]
    # without rounding 0.204 would be out as well: the limit is applied after rounding
    assert {r["max_concurrency"] for r in default_view(points, tpot_max_s=0.2, decimals=3)} == {
        8,
        32,
    }


def test_points_work_with_the_pareto_frontier_and_recommend(tmp_path):
    points = mark_frontier(read_configs(write_csv(tmp_path)))
    g1a = [p for p in points if (p["task"], p["device"], p["model"]) == ("chat", "G1", "A")]
    # each trades TPOT against J/token and throughput: none dominates another
    assert [p["pareto"] for p in g1a] == [1, 1, 1] == [int(x) for x in pareto_mask(g1a)]
    rec = recommend(g1a, objective="energy")
    assert rec.index == 2  # lowest J/token of the three


def test_cli_view_json_and_points(tmp_path, capsys):
    src = write_csv(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["mlenergy", "view", str(src), "--json"])
    assert exc.value.code in (0, None)
    doc = json.loads(capsys.readouterr().out)
    assert [r["max_concurrency"] for r in doc["rows"]] == [64, 8, 32]
    assert doc["no_config_within_limit"] == [["chat", "B", "G1"]]
    with pytest.raises(SystemExit) as exc:
        main(["mlenergy", "points", str(src), "-o", str(tmp_path / "out")])
    assert exc.value.code in (0, None)
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(ROWS) and "pareto" in summary[0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.write_text(HEADER.replace("avg_tpot_s,", "") + "\n"), "missing columns"),
        (lambda p: p.write_text(p.read_text().replace("0.204", "fast")), "not a number"),
        (lambda p: p.unlink(), "no such file"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, mutate, message):
    src = write_csv(tmp_path)
    mutate(src)
    with pytest.raises(SystemExit) as exc:
        main(["mlenergy", "view", str(src)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_given_csv_default_view():
    if not CSV.is_file():
        pytest.skip(f"reference data not found at {CSV}")
    points = read_configs(CSV)
    assert len(points) == 142
    view = {(r["task"], r["device"], r["model"]): r for r in default_view(points)}
    # gemma-2-2b chat on A100: 192 (40.42 J, 0.094 s) beats 256/320 (40.74, 41.18 J);
    # 512 has less energy (39.10 J) but 0.22 s TPOT
    a100 = view[("chat", "NVIDIA A100-SXM4-40GB", "google/gemma-2-2b-it")]
    assert a100["max_concurrency"] == 192 and a100["energy_per_req_j"] == pytest.approx(
        40.4205, 1e-4
    )
    # on H100: 512 (48.81 J, 0.176 s); 768..1536 use less energy but exceed 0.2 s
    h100 = view[("chat", "NVIDIA H100 80GB HBM3", "google/gemma-2-2b-it")]
    assert h100["max_concurrency"] == 512
    # a TPOT of 0.2018 s rounds to 0.20 and is kept
    assert any(abs(r["tpot_mean_s"] - 0.201814) < 1e-6 for r in view.values())
