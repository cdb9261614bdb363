"""A request trace of evaluated items served live through the gateway, and its comparison
with the replay of the same trace.

``serve_trace`` starts the gateway of a serve config (both models, ``model="auto"`` routed
by a trained router file, the config's cache) in this process and sends each item's prompt
through the openai SDK, one request at a time; answers are checked like the eval's. A
miss is charged what the gateway meters for it (``usage.energy_j``).

Cost basis. The eval and the gateway meter alike (the same meter, e.g. ``modeled:process``:
this process's CPU time; the same engines, one thread each, one request at a time), but
not at the same moment: on a shared machine the modeled idle term (idle watts x cores x
wall time) grows with other jobs' load, so the eval's joules and the live charges differ by
the load of their hours. The comparison therefore prices the replay at the live run's own
measured joules (``live_priced``: each (item, model) the live run answered costs the mean
of its live charges; pairs it never answered keep the eval's), so live and simulated
differ only where the simulated cache and router decided otherwise than the gateway's.
``compare`` also gives the eval-priced replay and the eval's joules of exactly the live
misses, which show how far the load moved the meter between the two runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.evaluate.replay import Outcome, Outcomes, ReplayResult

Log = Callable[[str], None]


@dataclass
class LiveRun:
    result: ReplayResult
    source: str = ""  # the gateway's energy source label
    misses: list[tuple[str, str, float]] = field(default_factory=list)  # (item, model, J)
    wall_s: float = 0.0


@dataclass(frozen=True)
class LiveComparison:
    live_j: float  # the gateway's charges
    simulated_j: float  # the replay of the same trace priced at the live run's joules
    replay_j: float  # the replay of the same trace, eval joules
    same_misses_j: float  # the eval's joules of the live run's misses
    live_misses: int
    replay_misses: int  # of the replay at the eval's joules
    simulated_misses: int  # of the replay at the live run's joules

    @property
    def vs_simulated(self) -> float:
        """live / simulated joules at the live run's prices (1.0: equal)."""
        return self.live_j / self.simulated_j if self.simulated_j else float("inf")

    @property
    def vs_replay(self) -> float:
        """live / replayed joules (1.0: equal)."""
        return self.live_j / self.replay_j if self.replay_j else float("inf")

    @property
    def vs_same_misses(self) -> float:
        return self.live_j / self.same_misses_j if self.same_misses_j else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "live_j": self.live_j,
            "simulated_j": self.simulated_j,
            "live_over_simulated": self.vs_simulated,
            "replay_j": self.replay_j,
            "same_misses_j": self.same_misses_j,
            "live_misses": self.live_misses,
            "replay_misses": self.replay_misses,
            "simulated_misses": self.simulated_misses,
            "live_over_replay": self.vs_replay,
            "live_over_same_misses": self.vs_same_misses,
        }

    def line(self) -> str:
        return (
            f"live vs simulated: the gateway charged {self.live_j:.1f} J over "
            f"{self.live_misses} misses; the simulation of the same trace at the live run's "
            f"joules {self.simulated_j:.1f} J over {self.simulated_misses} misses "
            f"({self.vs_simulated - 1:+.1%}); at the eval's joules {self.replay_j:.1f} J over "
            f"{self.replay_misses} misses ({self.vs_replay - 1:+.1%}; the eval's joules of the "
            "live misses "
            f"{self.same_misses_j:.1f} J, {self.vs_same_misses - 1:+.1%})"
        )


def live_priced(live: LiveRun, outcomes: Outcomes) -> Outcomes:
    """``outcomes`` with each (item, model) the live run answered priced at the mean of its
    live charges (correctness stays the eval's)."""
    charges: dict[tuple[str, str], list[float]] = {}
    for i, m, j in live.misses:
        charges.setdefault((i, m), []).append(j)
    table = {
        i: {
            m: Outcome(o.correct, sum(js) / len(js)) if (js := charges.get((i, m))) else o
            for m, o in row.items()
        }
        for i, row in outcomes.table.items()
    }
    return replace(outcomes, table=table)


def compare(
    live: LiveRun,
    replayed: ReplayResult,
    outcomes: Outcomes,
    simulate: Callable[[Outcomes], ReplayResult],
) -> LiveComparison:
    """``replayed``: the trace replayed at the eval's joules; ``simulate(outcomes)`` replays
    it again (same strategy, a fresh cache) at the prices given."""
    same = sum(outcomes.table[i][m].joules for i, m, _ in live.misses if m in outcomes.table[i])
    sim = simulate(live_priced(live, outcomes))
    return LiveComparison(
        live_j=live.result.joules,
        simulated_j=sim.joules,
        replay_j=replayed.joules,
        same_misses_j=same,
        live_misses=len(live.misses),
        replay_misses=replayed.requests - replayed.hits,
        simulated_misses=sim.requests - sim.hits,
    )


def serve_trace(
    config: str | Path,
    router_file: Path,
    trace: Sequence[str],
    tasks_file: Path,
    *,
    models: Sequence[str],
    capacity: int,
    max_tokens: int | None,
    log: Log = print,
    name: str = "",
) -> LiveRun:
    """``trace`` (item ids of ``tasks_file``) through the gateway of ``config``; each request
    with ``max_tokens``, or when None its item's budget (``TaskItem.max_tokens``, else 12)."""
    import openai

    from wattserve.serve import BackgroundServer, create_app
    from wattserve.serve.config import load_config
    from wattserve.tasks import check, read_tasks

    cfg = load_config(str(config))
    names = {m.name for m in cfg.models}
    if not set(models) <= names:
        raise ConfigError(f"{config} must serve {', '.join(models)} (it serves {sorted(names)})")
    cfg.router.enabled = True
    cfg.router.file = str(router_file)
    cfg.cache.capacity_entries = capacity
    cfg.port = 0
    items = {it.id: it for it in read_tasks(tasks_file)}
    if unknown := sorted(set(trace) - set(items)):
        raise ConfigError(f"{tasks_file} has no item {unknown[0]!r}")
    run = LiveRun(ReplayResult(name or f"cache ({cfg.cache.policy.upper()}) + router, live"))
    res = run.result
    log(f"starting the gateway ({config}): {', '.join(sorted(names))}")
    server = BackgroundServer(create_app(cfg), "127.0.0.1", 0, cfg.grace_s)
    server.start(timeout_s=900)  # loading two models on a loaded machine takes a while
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        t0 = time.monotonic()
        for item_id in trace:
            raw = client.completions.with_raw_response.create(
                model="auto",
                prompt=items[item_id].prompt,
                max_tokens=max_tokens or items[item_id].max_tokens or 12,
                temperature=0,
                stop=["\n"],
            )
            body = raw.parse()
            extra = dict(body.usage.model_extra or {}) if body.usage is not None else {}
            res.requests += 1
            res.correct += int(check(items[item_id], body.choices[0].text))
            if extra.get("cache_hit"):
                res.hits += 1
                continue
            model = raw.headers.get("x-wattserve-model", "?")
            joules = float(extra.get("energy_j") or 0.0)
            res.per_model[model] += 1
            res.joules += joules
            run.misses.append((item_id, model, joules))
            run.source = str(extra.get("energy_source") or run.source)
        run.wall_s = time.monotonic() - t0
        log(f"{res.requests} requests through the gateway in {run.wall_s:.0f} s")
    finally:
        server.stop()
    return run
