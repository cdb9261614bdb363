"""eval -> route train -> serve, on scripted engines and mock replicas: a small model that
knows only the words family and a large one that knows everything are evaluated, the router
is trained on their results with ``wattserve route train``, the strategies are replayed over
the measured results, and the same trace is served through the gateway with model="auto"."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from wattserve.evaluate import EvalConfig, run_eval
from wattserve.evaluate.demo import DemoSettings, router_choice, run_energy_demo, write_task_set
from wattserve.evaluate.replay import cascade, load_outcomes, oracle_choice, replay, zipf_trace
from wattserve.tasks import read_tasks

pytest.importorskip("openai")

from test_eval import ConstantPowerMeter, ScriptedEngine

TASK_SET = (("facts", 12, (2, 3)), ("words", 12, (1,)))


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.setattr("wattserve.evaluate.runner._environment", lambda *a: {"python": "test"})


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    write_task_set(tasks, TASK_SET, seed=0)
    items = read_tasks(tasks)
    answers = {it.prompt: f"{it.family}\t{it.answer}" for it in items}
    engines = {
        "small": ScriptedEngine(answers, {"words"}, delay_s=0.005),
        "large": ScriptedEngine(answers, {"facts", "words"}, delay_s=0.03),
    }
    cfg = EvalConfig(tasks_path=str(tasks), models=["small", "large"], result_dir=str(tmp_path))
    res = run_eval(cfg, engines=engines, meter=ConstantPowerMeter())
    assert res.status == "complete"
    return res.run_dir


#: the gateway config both served tests use: two mock models, LEC cache, no router of its own
SERVE_YAML = (
    "models:\n"
    "  - name: small\n    replicas: [{kind: mock, mock_tokens: 2}]\n"
    "  - name: large\n    replicas: [{kind: mock, mock_tokens: 2}]\n"
    "router: {enabled: false}\n"
    "cache: {policy: lec, capacity_entries: 8}\n"
    "energy: {meter: 'null'}\n"
)


def test_replay_over_measured_results(eval_dir: Path) -> None:
    out = load_outcomes(eval_dir, ["small", "large"])
    assert len(out.table) == 24
    assert out.accuracy("large") == 1.0 and out.accuracy("small") == 0.5
    assert out.mean_joules("large") > 2 * out.mean_joules("small")  # slower answers, same watts
    trace = zipf_trace(out.ids(), 400, alpha=0.8, seed=1)
    assert len(trace) == 400 and Counter(trace).most_common(1)[0][1] > 400 / 24
    large = replay("large", trace, out, dict.fromkeys(out.table, "large"))
    assert large.accuracy == 1.0 and large.hits == 0
    assert large.joules == pytest.approx(sum(out.table[i]["large"].joules for i in trace))
    oracle = replay("oracle", trace, out, oracle_choice(out, "small", "large"))
    assert oracle.accuracy == 1.0 and oracle.joules < large.joules
    casc = cascade("cascade", trace, out, "small", "large")
    assert casc.accuracy == 1.0 and oracle.joules < casc.joules


def test_eval_route_train_serve(eval_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(SERVE_YAML)
    s = DemoSettings(
        config=str(config),
        run_dir=str(tmp_path / "demo"),
        small="small",
        large="large",
        requests=60,
        capacity=40,
        eval_dir=str(eval_dir),
    )
    res = run_energy_demo(s, log=lambda m: None, live=True)
    assert res.router_file.is_file()
    rows = {r.name: r for r in res.rows}
    assert set(rows) == {
        "always small",
        "always large",
        "router only",
        "cache (LFU) + large",
        "cache (LEC) + router",
    }
    assert rows["always large"].accuracy == 1.0 and rows["always small"].accuracy < 1.0
    # the router trained on these labels sends facts to the large model, words to the small
    outcomes = load_outcomes(eval_dir)
    routed = router_choice(res.router_file, outcomes)
    assert routed == {i: "large" if outcomes.families[i] == "facts" else "small" for i in routed}
    assert rows["router only"].accuracy == 1.0
    assert rows["router only"].joules < rows["always large"].joules
    lec, lfu = rows["cache (LEC) + router"], rows["cache (LFU) + large"]
    assert lec.hits > 0 and lec.accuracy == 1.0 and lec.joules < lfu.joules
    # live: every request through the gateway; the first of each prompt runs on the model
    # the router picks, repeats are cache hits
    live = res.live
    assert live is not None and live.requests == 60
    trace = zipf_trace(outcomes.ids(), 60, s.alpha, s.seed)
    assert live.hits == 60 - len(set(trace))
    assert live.per_model == Counter(routed[i] for i in set(trace))
    # the comparison prices exactly the live misses at the eval's joules
    cmp = res.comparison
    assert cmp is not None and cmp.live_misses == len(set(trace))
    assert cmp.same_misses_j == pytest.approx(
        sum(outcomes.table[i][routed[i]].joules for i in set(trace))
    )
    assert (
        cmp.replay_j == pytest.approx(lec.joules) and cmp.replay_misses == lec.requests - lec.hits
    )
    # the null meter charges nothing live, so the replay at the live run's joules costs 0
    # for every routed item, and the live-priced row is in the table
    assert cmp.live_j == 0.0 and cmp.simulated_j == 0.0
    assert res.live_sim is not None and res.live_sim.hits == lec.hits
    # the line names each replay's own misses
    assert cmp.simulated_misses == res.live_sim.requests - res.live_sim.hits
    assert f"joules 0.0 J over {cmp.simulated_misses} misses" in cmp.line()
    assert f"J over {cmp.replay_misses} misses (" in cmp.line()


def test_per_request_cost_router_serves_through_the_gateway(eval_dir: Path, tmp_path: Path):
    """``route train --cost-from items`` on the eval's routing folder: the gateway loads the
    fitted costs and routes each request as ``router_choice`` replays it."""
    from wattserve.evaluate.demo import _cli
    from wattserve.evaluate.live import serve_trace
    from wattserve.route import Router

    router_file = tmp_path / "fitted.pkl"
    argv = ["route", "train", "--data", str(eval_dir / "routing"), "--cost-from", "items"]
    code, _, err = _cli([*argv, "--output", str(router_file)])
    assert code == 0, err
    assert all(hasattr(c, "coefficients") for c in Router.load(router_file).cost_specs.values())
    config = tmp_path / "serve.yaml"
    config.write_text(SERVE_YAML)
    outcomes = load_outcomes(eval_dir)
    routed = router_choice(router_file, outcomes)
    assert set(routed.values()) == {"small", "large"}
    trace = zipf_trace(outcomes.ids(), 30, 0.8, 0)
    run = serve_trace(
        config, router_file, trace, eval_dir / "tasks.jsonl",
        models=["small", "large"], capacity=40, max_tokens=None, log=lambda m: None,
    )  # fmt: skip
    assert run.result.requests == 30
    assert run.result.per_model == Counter(routed[i] for i in set(trace))
