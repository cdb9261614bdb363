"""Energy per correct answer, end to end: evaluate two models, train the router on their
results, serve both behind the gateway and compare five serving strategies.

``run_energy_demo``:

1. writes a small task set (``wattserve tasks make``: facts at the tiers and words at the
   level where the two models differ) and evaluates both models on it (``run_eval``);
2. trains a router on the eval's routing dataset with ``wattserve route train`` (the
   eval's measured joules as costs; threshold calibrated to the large model's accuracy);
3. draws a trace of repeated queries with power-law popularity over the evaluated items;
4. replays the trace over the measured per-item results (``wattserve.evaluate.replay``)
   for always-small, always-large, router only, cache (LFU) + large and cache (LEC) +
   router, through the real ``ResponseCache`` and the trained ``Router``;
5. serves both models behind the gateway (the serve config names them, ``model="auto"``
   routes, the cache is LEC) with the router file set, and sends the same trace through
   the openai SDK (``wattserve.evaluate.live``); answers are checked like the eval's, joules
   are the gateway's metered charges, set beside the replayed joules of the same trace (the
   eval and the gateway meter alike: ``modeled:process``, one thread per engine).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError, EngineUnavailable
from wattserve.evaluate.live import LiveComparison, LiveRun, compare, live_priced, serve_trace
from wattserve.evaluate.replay import (
    Outcomes,
    ReplayResult,
    load_outcomes,
    make_cache,
    replay,
    zipf_trace,
)

#: (family, items, difficulty levels) of the demo's task set
TASK_SET: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("facts", 30, (2, 3)),
    ("words", 20, (1,)),
)
Log = Callable[[str], None]


@dataclass
class DemoSettings:
    config: str  # gateway config serving both models (router + cache sections)
    run_dir: str = "runs/demo/energy"
    small: str = "smollm2-135m"
    large: str = "gemma3-270m"
    backend: str = "llama-cpp"
    threads: int = 1
    meter: str = "modeled:process"  # this process's CPU time: the same as the gateway config's
    requests: int = 240
    alpha: float = 0.8
    capacity: int = 15
    max_tokens: int = 12
    seed: int = 0
    task_set: Sequence[tuple[str, int, Sequence[int]]] = TASK_SET
    eval_dir: str | None = None  # reuse this eval run instead of evaluating


@dataclass
class DemoResult:
    eval_dir: Path
    router_file: Path
    rows: list[ReplayResult]
    live: ReplayResult | None
    live_source: str = ""
    eval_accuracy: dict[str, float] = field(default_factory=dict)
    eval_j: dict[str, float] = field(default_factory=dict)
    comparison: LiveComparison | None = None  # the live row's charges vs the replay's
    live_sim: ReplayResult | None = None  # the LEC + router replay at the live run's joules


def write_task_set(
    path: Path, task_set: Sequence[tuple[str, int, Sequence[int]]], seed: int
) -> int:
    from wattserve.tasks import make_tasks, write_tasks

    items = [it for fam, n, lv in task_set for it in make_tasks(fam, n, seed, list(lv))]
    return write_tasks(path, items)


def evaluate(s: DemoSettings, log: Log) -> Path:
    """Run (or reuse) the eval of both models on the demo task set; its run directory."""
    if s.eval_dir:
        return Path(s.eval_dir)
    from wattserve.evaluate import EvalConfig, run_eval

    root = Path(s.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tasks = root / "tasks.jsonl"
    n = write_task_set(tasks, s.task_set, s.seed)
    log(f"evaluating {s.small} and {s.large} on {n} items ({s.backend}, {s.threads} thread)")
    cfg = EvalConfig.build(
        tasks_path=str(tasks),
        models=[s.small, s.large],
        backend=s.backend,
        threads=s.threads,
        max_tokens=s.max_tokens,
        meter=s.meter,
        seed=s.seed,
        result_dir=str(root),
        label="eval",
    )
    result = run_eval(cfg)
    if result.status != "complete":
        raise EngineUnavailable(f"the demo eval ended {result.status} ({result.run_dir})")
    return result.run_dir


def train_router(eval_dir: Path, output: Path, target_quality: float | None, log: Log) -> Path:
    """``wattserve route train`` on the eval's routing dataset, its costs, calibrated to
    ``target_quality`` when the training data allow it (else the default threshold)."""
    import json

    routing = eval_dir / "routing"
    info = json.loads((routing / "costs.json").read_text())
    costs = {m: j for m, j in (info.get("mean_j_per_request") or {}).items() if j is not None}
    if len(costs) < 2:
        raise ConfigError(f"{eval_dir} has no measured joules to train the router with")
    args = ["route", "train", "--data", str(routing), "--output", str(output)]
    for m, j in costs.items():
        args += ["--cost", f"{m}={j:.6g}"]
    tries = [[*args, "--target-quality", f"{target_quality:.4f}"]] if target_quality else []
    for argv in [*tries, args]:
        code, out, err = _cli(argv)
        if code == 0:
            log(out.strip())
            return output
        log(f"route train: {err.strip().splitlines()[-1:]}")
    raise ConfigError(f"route train failed on {eval_dir / 'routing'}")


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``wattserve ARGV`` in this process (no second interpreter to start): exit code,
    stdout, stderr."""
    import contextlib
    import io

    from wattserve.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    return (0 if code in (0, None) else 1), out.getvalue(), err.getvalue()


def router_choice(router_file: Path, outcomes: Outcomes) -> dict[str, str]:
    """The trained router's model for every evaluated item (per-request costs evaluated at
    the item's prompt and answer budget, as the gateway evaluates them)."""
    from wattserve.route import Router
    from wattserve.types import Request

    router = Router.load(router_file)
    ids = outcomes.ids()
    q = router.quality([outcomes.prompts[i] for i in ids])
    reqs = [
        Request(id=i, prompt=outcomes.prompts[i], max_tokens=outcomes.budgets.get(i, 12))
        for i in ids
    ]
    picks = router.choose(q, router.costs_for(reqs))
    return {i: router.models[int(j)] for i, j in zip(ids, picks, strict=True)}


def replay_rows(
    trace: Sequence[str], outcomes: Outcomes, routed: dict[str, str], s: DemoSettings
) -> list[ReplayResult]:
    small = dict.fromkeys(outcomes.table, s.small)
    large = dict.fromkeys(outcomes.table, s.large)
    return [
        replay("always small", trace, outcomes, small),
        replay("always large", trace, outcomes, large),
        replay("router only", trace, outcomes, routed),
        replay("cache (LFU) + large", trace, outcomes, large, make_cache("lfu", s.capacity)),
        replay("cache (LEC) + router", trace, outcomes, routed, make_cache("lec", s.capacity)),
    ]


def serve_live(
    s: DemoSettings, router_file: Path, trace: Sequence[str], eval_dir: Path, log: Log
) -> LiveRun:
    """The trace through the gateway (model="auto", the config's cache) with the openai SDK."""
    return serve_trace(
        s.config,
        router_file,
        trace,
        eval_dir / "tasks.jsonl",
        models=[s.small, s.large],
        capacity=s.capacity,
        max_tokens=s.max_tokens,
        log=log,
    )


def run_energy_demo(s: DemoSettings, log: Log = print, live: bool = True) -> DemoResult:
    root = Path(s.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    eval_dir = evaluate(s, log)
    outcomes = load_outcomes(eval_dir, [s.small, s.large])
    target = outcomes.accuracy(s.large)
    router_file = train_router(eval_dir, root / "router.pkl", target, log)
    routed = router_choice(router_file, outcomes)
    trace = zipf_trace(outcomes.ids(), s.requests, s.alpha, s.seed)
    rows = replay_rows(trace, outcomes, routed, s)
    result = DemoResult(
        eval_dir=eval_dir,
        router_file=router_file,
        rows=rows,
        live=None,
        eval_accuracy={m: outcomes.accuracy(m) for m in outcomes.models},
        eval_j={m: outcomes.mean_joules(m) for m in outcomes.models},
    )
    if live:
        run = serve_live(s, router_file, trace, eval_dir, log)
        result.live, result.live_source = run.result, run.source
        name = "cache (LEC) + router, at live joules"
        result.comparison = compare(
            run,
            rows[-1],
            outcomes,
            lambda o: replay(name, trace, o, routed, make_cache("lec", s.capacity)),
        )
        result.live_sim = replay(
            name, trace, live_priced(run, outcomes), routed, make_cache("lec", s.capacity)
        )
    return result


def table_rows(result: DemoResult) -> list[dict[str, Any]]:
    rows = [{"how": "replay", **r.as_dict()} for r in result.rows]
    if result.live_sim is not None:
        rows.append({"how": "replay", **result.live_sim.as_dict()})
    if result.live is not None:
        rows.append(
            {"how": f"gateway ({result.live_source or 'no meter'})", **result.live.as_dict()}
        )
    return rows


def print_table(result: DemoResult, console: Any) -> None:
    from rich.table import Table

    t = Table(title="energy per correct answer: five strategies on the same repeated queries")
    for col in ("strategy", "how", "accuracy", "joules", "J/correct", "hit rate", "answers by"):
        t.add_column(col, justify="left" if col in ("strategy", "how", "answers by") else "right")
    for r in table_rows(result):
        by = Counter(r["per_model"])
        t.add_row(
            r["strategy"],
            r["how"],
            f"{r['accuracy']:.3f}",
            f"{r['joules']:.1f}",
            f"{r['j_per_correct']:.3f}",
            f"{r['hit_rate']:.0%}",
            ", ".join(f"{m} {n}" for m, n in sorted(by.items())),
        )
    console.print(t)
    evals = ", ".join(
        f"{m} {result.eval_accuracy[m]:.2f} at {result.eval_j[m]:.2f} J"
        for m in result.eval_accuracy
    )
    console.print(f"eval ({result.eval_dir}): accuracy and mean J/request {evals}")
    if result.comparison is not None:
        console.print(result.comparison.line())
    console.print(f"router: {result.router_file}")
