"""Zhu et al.'s real-data setting (2306.02003, cache + model multiplexer) on measured data.

From an eval run (``wattserve eval`` with a small and a large model; without a run
directory a quick one is made like ``wattserve demo-energy``'s) take 100 distinct queries,
half of them ones the small model answers right; send 10,000 requests with power-law
popularity (alpha 0.2, 0.5, 0.8) through a 40-entry cache, online (frequencies counted as
requests arrive) and offline (the trace's frequencies known); each miss costs the measured
joules of the model that answers it. Combinations: LFU + large (the baseline), LEC +
router (the router trained by ``wattserve route train --cost-from items`` on the eval's other
items: per-request costs fitted on their measured joules), LEC +
oracle selector, the router and a cascade without cache (small first, a perfect verifier
escalating its wrong answers: ``c_s + (1 - correct_s) * c_l``), always-small/large.

Then ``--live`` requests (500; alpha 0.8) go through the gateway of ``--config`` (both
models, llama.cpp, one thread each, ``model="auto"`` with the router above, LEC cache of
the same size) and its charged joules are set beside the replay of the same trace. The
cost basis is the same on both sides: the eval and the gateway meter with
``modeled:process`` (this process's CPU time) on the same engines, one request at a time;
the replay prices each miss at the eval's joules of that item and model.

    python benchmarks/real_mux.py RUN_DIR [--small smollm2-135m --large gemma3-270m]

Prints accuracy, J per correct answer and the improvement over LFU + large per alpha.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

from wattserve.cache.response_cache import ResponseCache
from wattserve.errors import WattserveError
from wattserve.evaluate.demo import DemoSettings, _cli, evaluate, router_choice
from wattserve.evaluate.live import compare, serve_trace
from wattserve.evaluate.replay import (
    Outcomes,
    ReplayResult,
    cascade,
    load_outcomes,
    make_cache,
    oracle_choice,
    replay,
    zipf_trace,
)
from wattserve.evaluate.routing import ITEM_COSTS


def pick_queries(out: Outcomes, small: str, n: int, seed: int) -> list[str]:
    """``n`` item ids, half answered right by ``small`` (as many as there are)."""
    rng = random.Random(seed)
    right = [i for i in out.ids() if out.table[i][small].correct]
    wrong = [i for i in out.ids() if not out.table[i][small].correct]
    rng.shuffle(right)
    rng.shuffle(wrong)
    k = min(n // 2, len(right))
    chosen = right[:k] + wrong[: n - k]
    if len(chosen) < n:
        chosen += right[k : k + n - len(chosen)]
    return chosen


def train_on_rest(
    out: Outcomes, held_out: set[str], small: str, large: str, work: Path, run_dir: Path
) -> Path:
    """``wattserve route train --cost-from items`` on the items not among the queries (all
    items when none): a routing folder of their labels per family and their item costs."""
    rest = {i for i in out.ids() if i not in held_out} or set(out.ids())
    data = work / "routing"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.csv"):
        old.unlink()
    for fam in sorted({out.families[i] for i in rest}):
        with open(data / f"{fam}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["prompt", small, large])
            for i in sorted(rest):
                if out.families[i] == fam:
                    row = [float(out.table[i][m].correct) for m in (small, large)]
                    w.writerow([out.prompts[i], *row])
    with open(run_dir / "routing" / ITEM_COSTS, encoding="utf-8") as src:
        kept = [line for line in src if json.loads(line)["id"] in rest]
    (data / ITEM_COSTS).write_text("".join(kept), encoding="utf-8")
    router = work / "router.pkl"
    args = ["route", "train", "--data", str(data), "--output", str(router), "--cost-from", "items"]
    code, stdout, stderr = _cli(args)  # the default gain rule, its default threshold
    if code != 0:
        raise WattserveError(f"route train failed: {stderr.strip()}")
    print(stdout.strip(), f"(trained on {len(rest)} items not among the queries)")
    return router


def run(args: argparse.Namespace) -> None:
    if args.run_dir is None:
        s = DemoSettings(config="", run_dir=args.work, small=args.small, large=args.large)
        run_dir = evaluate(s, print)
    else:
        run_dir = Path(args.run_dir)
    out = load_outcomes(run_dir, [args.small, args.large])
    queries = pick_queries(out, args.small, args.distinct, args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    router_file = train_on_rest(out, set(queries), args.small, args.large, work, run_dir)
    routed = router_choice(router_file, out)
    oracle = oracle_choice(out, args.small, args.large)
    small_all = dict.fromkeys(out.table, args.small)
    large_all = dict.fromkeys(out.table, args.large)
    n_right = sum(out.table[i][args.small].correct for i in queries)
    print(
        f"{run_dir}: {len(queries)} queries ({n_right} the small model answers right), "
        f"{args.requests} requests, cache {args.capacity}; mean J: "
        + ", ".join(f"{m} {out.mean_joules(m, queries):.3f}" for m in out.models)
    )
    for alpha in args.alphas:
        trace = zipf_trace(queries, args.requests, alpha, args.seed)
        rows: list[tuple[str, ReplayResult]] = []
        for setting in ("online", "offline"):
            known = trace if setting == "offline" else None

            def cache(policy: str, known: list[str] | None = known) -> ResponseCache:
                return make_cache(policy, args.capacity, known)

            rows += [
                (setting, replay("LFU + large", trace, out, large_all, cache("lfu"))),
                (setting, replay("LEC + router", trace, out, routed, cache("lec"))),
                (setting, replay("LEC + oracle selector", trace, out, oracle, cache("lec"))),
                (setting, replay("LEC + large", trace, out, large_all, cache("lec"))),
            ]
        rows += [
            ("no cache", replay("router only", trace, out, routed)),
            ("no cache", cascade("cascade (perfect verifier)", trace, out, args.small, args.large)),
            ("no cache", replay("always large", trace, out, large_all)),
            ("no cache", replay("always small", trace, out, small_all)),
        ]
        print(f"\nalpha {alpha}")
        head = f"{'setting':9} {'combination':28} {'accuracy':>8} {'J/correct':>10}"
        print(f"{head} {'vs LFU+large':>12}")
        base = {s: r.j_per_correct for s, r in rows if r.name == "LFU + large"}
        for setting, r in rows:
            ref = base.get(setting, base["online"])
            print(
                f"{setting:9} {r.name:28} {r.accuracy:8.3f} {r.j_per_correct:10.3f} "
                f"{ref / r.j_per_correct:11.2f}x"
            )
    if args.live:
        live(args, run_dir, out, queries, routed, router_file)


def live(
    args: argparse.Namespace,
    run_dir: Path,
    out: Outcomes,
    queries: list[str],
    routed: dict[str, str],
    router_file: Path,
) -> None:
    """``--live`` requests (alpha ``--live-alpha``) through the gateway: LEC + the router,
    both models behind it; its charged joules beside the replay of the same trace."""
    trace = zipf_trace(queries, args.live, args.live_alpha, args.seed)
    sim = replay("LEC + router", trace, out, routed, make_cache("lec", args.capacity))
    run = serve_trace(
        args.config,
        router_file,
        trace,
        run_dir / "tasks.jsonl",
        models=[args.small, args.large],
        capacity=args.capacity,
        max_tokens=args.max_tokens,
    )
    got = run.result
    cmp = compare(
        run, sim, out, lambda o: replay("sim", trace, o, routed, make_cache("lec", args.capacity))
    )
    print(f"\nlive gateway, LEC + router, {args.live} requests, alpha {args.live_alpha}")
    print(f"{'':9} {'combination':28} {'accuracy':>8} {'J/correct':>10} {'hit rate':>9}")
    for how, r in (("replay", sim), ("live", got)):
        print(
            f"{how:9} {r.name:28} {r.accuracy:8.3f} {r.j_per_correct:10.3f} "
            f"{r.hits / max(1, r.requests):9.0%}"
        )
    print(cmp.line(), f"[gateway energy source: {run.source or 'none'}]")
    ok = abs(cmp.vs_simulated - 1) <= 0.15
    print(f"charged joules within 15% of the simulation at live prices: {'yes' if ok else 'no'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", help="an eval run directory (none: run a quick eval)")
    p.add_argument("--small", default="smollm2-135m")
    p.add_argument("--large", default="gemma3-270m")
    p.add_argument("--distinct", type=int, default=100)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--capacity", type=int, default=40)
    p.add_argument(
        "--alphas", type=lambda v: [float(x) for x in v.split(",")], default=[0.2, 0.5, 0.8]
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/real_mux", help="the router file, a quick eval")
    p.add_argument("--live", type=int, default=500, help="live gateway requests (0: none)")
    p.add_argument("--live-alpha", type=float, default=0.8)
    p.add_argument("--config", default="examples/serve-energy.yaml", help="the live gateway")
    p.add_argument(
        "--max-tokens", type=int, default=None, help="every live request's (default: its item's)"
    )
    args = p.parse_args()
    if args.live < 0 or args.distinct < 1 or args.requests < 1 or args.capacity < 1:
        p.error("--live must be >= 0; --distinct, --requests and --capacity at least 1")
    try:
        run(args)
    except WattserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
