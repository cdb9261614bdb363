"""``wattserve eval`` end to end on scripted and simulated engines: records, summary, resume,
the routing dataset and ``route train`` reading it."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from wattserve.evaluate import EvalConfig, resume_eval, run_eval
from wattserve.evaluate import store as estore
from wattserve.evaluate.stats import item_stats, paired_difference
from wattserve.tasks import make_tasks, write_tasks
from wattserve.types import Chunk, EnergyReading, Request, Usage

WATTS = 50.0


class ConstantPowerMeter:
    """A device drawing ``WATTS`` all the time: cumulative joules = watts x elapsed seconds."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def devices(self) -> list[str]:
        return ["cpu0"]

    def read(self) -> EnergyReading:
        t = time.perf_counter()
        return EnergyReading(t, {"cpu0": WATTS * (t - self.t0)}, {"cpu0": "modeled"})

    def close(self) -> None:
        pass


class ScriptedEngine:
    """Answers right on the families it knows (looked up by prompt), wrong elsewhere.

    Each answer takes ``delay_s``; ``fail_ids`` get an engine error instead.
    """

    def __init__(
        self,
        answers: dict[str, str],
        knows: set[str],
        delay_s: float = 0.01,
        fail_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.answers = answers  # prompt -> (family, answer) joined as "family\tanswer"
        self.knows = knows
        self.delay_s = delay_s
        self.fail_ids = fail_ids
        self.served: list[str] = []
        self.name = "scripted"

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        await asyncio.sleep(self.delay_s)
        if request.id in self.fail_ids:
            raise RuntimeError("engine fell over")
        if request.id != "probe":
            self.served.append(request.id)
        family, _, answer = self.answers.get(request.prompt or "", "\t").partition("\t")
        text = f" {answer}" if family in self.knows else " wrong"
        yield Chunk(text=text, t_s=time.perf_counter(), tokens=1)
        yield Chunk(
            text="",
            t_s=time.perf_counter(),
            finish_reason="stop",
            usage=Usage(len((request.prompt or "").split()), 2),
        )


FAMS = ("arithmetic", "facts", "facts-mc", "words")


@pytest.fixture
def task_file(tmp_path: Path) -> tuple[Path, list]:
    items = [it for fam in FAMS for it in make_tasks(fam, 8, seed=0)]
    path = tmp_path / "tasks.jsonl"
    write_tasks(path, items)
    return path, items


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.setattr("wattserve.evaluate.runner._environment", lambda *a: {"python": "test"})


def _engines(items, **kw):
    answers = {it.prompt: f"{it.family}\t{it.answer}" for it in items}
    small = ScriptedEngine(answers, {"arithmetic", "words"}, **kw)
    large = ScriptedEngine(answers, set(FAMS), delay_s=0.03)
    return {"small": small, "large": large}


def test_eval_records_summary_and_energy(tmp_path, task_file):
    path, items = task_file
    cfg = EvalConfig(
        tasks_path=str(path), models=["small", "large"], result_dir=str(tmp_path / "runs")
    )
    engines = _engines(items)
    res = run_eval(cfg, engines=engines, meter=ConstantPowerMeter())
    assert res.status == "complete"
    recs = estore.read_records(res.run_dir)
    assert len(recs) == 2 * len(items)
    for r in recs:
        assert r["correct"] == (r["model"] == "large" or r["family"] in ("arithmetic", "words"))
        # one request in flight at a time: its joules are the constant power over its span
        assert r["energy_j"] == pytest.approx(WATTS * r["latency_s"], rel=0.05)
        assert r["energy_source"] == "modeled" and r["energy_split"] == "active_time"
        assert r["output_tokens"] == 2 and r["error"] is None
    rows = {(r["model"], r["family"]): r for r in res.summary["rows"]}
    assert rows["small", "arithmetic"]["accuracy"] == 1.0
    assert rows["small", "facts"]["accuracy"] == 0.0
    assert rows["small", "all"]["accuracy"] == 0.5 and rows["small", "all"]["n"] == 32
    lo, hi = rows["small", "all"]["accuracy_ci"]
    assert lo < 0.5 < hi
    large = rows["large", "all"]
    assert large["j_per_correct"] == pytest.approx(large["j_total"] / 32)
    assert large["j_per_request"] > rows["small", "all"]["j_per_request"]  # slower answers
    assert rows["small", "facts"]["j_per_correct"] == float("inf")
    diffs = {d["family"]: d for d in res.summary["differences"]}
    assert diffs["facts"]["delta"] == 1.0 and diffs["facts"]["separated"]
    assert diffs["words"]["delta"] == 0.0 and not diffs["words"]["separated"]
    assert [r["family"] for r in res.summary["rows"][:5]] == [*FAMS, "all"]
    state = json.loads((res.run_dir / "eval.json").read_text())
    assert state["status"] == "complete" and state["summary"]["rows"]
    with open(res.run_dir / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 10


def test_routing_dataset_is_read_by_route_train(tmp_path, task_file, capsys):
    path, items = task_file
    cfg = EvalConfig(tasks_path=str(path), models=["small", "large"], result_dir=str(tmp_path))
    res = run_eval(cfg, engines=_engines(items), meter=ConstantPowerMeter())
    routing = res.run_dir / "routing"
    assert sorted(p.name for p in routing.glob("*.csv")) == sorted(f"{f}.csv" for f in FAMS)
    from wattserve.route.data import load_labelled_csvs

    data = load_labelled_csvs(routing)
    assert data.models == ("small", "large") and len(data) == len(items)
    prompts = {it.prompt: it for it in items}
    for text, labels, group in zip(data.texts, data.labels, data.groups, strict=True):
        it = prompts[text]
        assert group == it.family
        assert labels.tolist() == [float(it.family in ("arithmetic", "words")), 1.0]
    costs = json.loads((routing / "costs.json").read_text())
    assert costs["unit"] == "J" and costs["items"] == len(items)
    assert costs["mean_j_per_request"]["large"] > costs["mean_j_per_request"]["small"] > 0
    per_item = [json.loads(line) for line in (routing / "item_costs.jsonl").open()]
    assert len(per_item) == len(items) and set(per_item[0]["joules"]) == {"small", "large"}

    from wattserve.cli import main

    cmd = costs["route_train"].split()[1:] + ["--output", str(tmp_path / "r.pkl")]
    with pytest.raises(SystemExit) as exc:
        main(cmd)
    assert exc.value.code in (0, None), capsys.readouterr().err
    assert "trained tfidf router on 32 prompts for small, large" in capsys.readouterr().out
    from wattserve.route import Router

    router = Router.load(tmp_path / "r.pkl")
    assert tuple(router.models) == ("small", "large")


def test_resume_runs_only_missing_and_failed_pairs(tmp_path, task_file):
    path, items = task_file
    cfg = EvalConfig(tasks_path=str(path), models=["small", "large"], result_dir=str(tmp_path))
    failing = frozenset({items[3].id})
    first = _engines(items, fail_ids=failing)
    res = run_eval(cfg, engines=first, meter=ConstantPowerMeter())
    rows = {(r["model"], r["family"]): r for r in res.summary["rows"]}
    assert rows["small", "arithmetic"]["failed"] == 1 and rows["small", "arithmetic"]["n"] == 7
    log = res.run_dir / "records.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    kept = len(lines) - 10
    log.write_bytes(b"".join(lines[:kept]) + lines[kept][:25])  # killed mid-line
    dropped = [json.loads(x) for x in lines[kept:]]
    again = _engines(items)
    res2 = resume_eval(res.run_dir, engines=again, meter=ConstantPowerMeter())
    served = {(m, i) for m, e in again.items() for i in e.served}
    want = {(d["model"], d["item_id"]) for d in dropped} | {("small", items[3].id)}
    assert served == want
    latest = estore.latest_records(estore.read_records(res2.run_dir))
    assert len(latest) == 2 * len(items) and all(r["error"] is None for r in latest.values())
    rows = {(r["model"], r["family"]): r for r in res2.summary["rows"]}
    assert rows["small", "arithmetic"]["failed"] == 0 and rows["small", "arithmetic"]["n"] == 8
    state = json.loads((res2.run_dir / "eval.json").read_text())
    assert len(state["segments"]) == 2 and state["status"] == "complete"


def test_bootstrap_intervals():
    c = np.array([1, 0] * 50, dtype=float)
    j = np.full(100, 2.0)
    s = item_stats(c, j, 2000, seed=1)
    assert s["accuracy"] == 0.5 and s["j_per_request"] == 2.0 and s["j_per_correct"] == 4.0
    lo, hi = s["accuracy_ci"]
    assert 0.38 < lo < 0.45 and 0.55 < hi < 0.62  # about +-1.96 * sqrt(.25 / 100)
    jlo, jhi = s["j_per_correct_ci"]
    assert jlo < 4.0 < jhi
    assert item_stats(c, None, 500, 0)["j_per_correct"] is None
    d = paired_difference(np.zeros(50), np.ones(50), 500, 0)
    assert d["delta"] == 1.0 and d["separated"]


@pytest.fixture
def cli(capsys, monkeypatch):
    from wattserve.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def test_cli_eval_on_simulated_engines(cli, tmp_path):
    tasks = tmp_path / "t.jsonl"
    fams = ",".join(FAMS)  # the four original families: 4 x 3 items x 2 models = 24 records
    assert cli("tasks", "make", "--family", fams, "--n", "3", "-o", str(tasks)).returncode == 0
    r = cli(
        "eval",
        "--tasks",
        str(tasks),
        "--model",
        "a,b",  # a comma list, as bench's list flags take (repeating --model works too)
        "--backend",
        "simulated",
        "--max-tokens",
        "2",
        "--meter",
        "null",
        "--result-dir",
        str(tmp_path / "runs"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "complete"
    run_dir = Path(out["run_dir"])
    recs = estore.read_records(run_dir)
    assert len(recs) == 24 and {r["model"] for r in recs} == {"a", "b"}
    assert all(r["energy_j"] is None and not r["correct"] for r in recs)  # null meter, " tok"
    rows = out["summary"]["rows"]
    assert {(r["model"], r["family"]) for r in rows} >= {("a", "all"), ("b", "words")}
    assert all(r["accuracy"] == 0.0 and r["j_per_correct"] is None for r in rows)
    assert out["routing"]["items"] == 12 and out["routing"]["mean_j_per_request"]["a"] is None
    r = cli("eval", "--resume", str(run_dir))  # nothing missing: summary only
    assert r.returncode == 0 and "accuracy" in r.stdout and "routing dataset: 12 items" in r.stdout


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (("--model", "a"), "--tasks is required"),
        (("--tasks", "TASKS"), "at least one --model"),
        (
            ("--tasks", "nope.jsonl", "--model", "a", "--backend", "simulated"),
            "task file not found",
        ),
        (
            (
                "--tasks",
                "TASKS",
                "--model",
                "a",
                "--model",
                "b",
                "--base-url",
                "http://x/v1",
                "--base-url",
                "http://y/v1",
                "--base-url",
                "http://z/v1",
            ),
            "one --base-url",
        ),
        (("--tasks", "TASKS", "--model", "a", "--model", "a"), "once"),
        (("--tasks", "TASKS", "--model", "a", "--max-tokens", "0"), "max_tokens"),
        (("--resume", "NOWHERE"), "not an eval directory"),
    ],
)
def test_cli_bad_input_one_line(cli, tmp_path, args, msg):
    tasks = tmp_path / "t.jsonl"
    write_tasks(tasks, make_tasks("words", 2))
    args = tuple(
        str(tasks) if a == "TASKS" else str(tmp_path / "x") if a == "NOWHERE" else a for a in args
    )
    r = cli("eval", *args, "--result-dir", str(tmp_path / "runs"))
    assert r.returncode != 0
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_smollm2_on_a_few_items(tmp_path):
    """The embedded default model answers a handful of items; records carry measured joules."""
    items = [it for fam in FAMS for it in make_tasks(fam, 3, seed=0)]
    path = tmp_path / "t.jsonl"
    write_tasks(path, items)
    cfg = EvalConfig(
        tasks_path=str(path),
        models=["smollm2-135m"],
        meter="modeled:process",
        result_dir=str(tmp_path),
    )
    res = run_eval(cfg)
    recs = estore.read_records(res.run_dir)
    assert len(recs) == len(items) and all(r["error"] is None for r in recs)
    assert all(r["energy_j"] > 0 and r["output_tokens"] >= 1 for r in recs)
    assert any(r["correct"] for r in recs)
