"""A short mixed workload with repeats sent through the official openai SDK (the client side
of ``wattserve demo-gateway`` and ``examples/gateway_demo.py``)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Give me a tip for writing clean code.",
    "What does a transformer model do?",
)


@dataclass
class WorkloadResult:
    sent: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    hits: int = 0
    energy_j: float = 0.0  # joules charged to the answers that ran on a replica
    saved_j: float = 0.0  # joules the cache hits would have cost (their stored cost)
    per_model: Counter = field(default_factory=Counter)
    per_replica: Counter = field(default_factory=Counter)
    energy_source: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


def workload(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` requests over a few prompts (so some repeat), mixing chat/completions and
    streaming/non-streaming; all at temperature 0, so repeats are cacheable."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(PROMPTS))]  # a skewed, Zipf-like popularity
    out = []
    for _ in range(n):
        prompt = rng.choices(PROMPTS, weights)[0]
        out.append({"prompt": prompt, "chat": rng.random() < 0.75, "stream": rng.random() < 0.5})
    return out


def _send(client: Any, model: str, item: dict[str, Any], max_tokens: int) -> tuple[dict, dict]:
    """One request; returns (usage extras, headers)."""
    kw = {"model": model, "max_tokens": max_tokens, "temperature": 0}
    if item["chat"]:
        api = client.chat.completions
        kw["messages"] = [{"role": "user", "content": item["prompt"]}]
    else:
        api = client.completions
        kw["prompt"] = item["prompt"]
    if item["stream"]:
        kw.update(stream=True, stream_options={"include_usage": True})
        with api.with_streaming_response.create(**kw) as resp:
            usage = None
            for chunk in resp.parse():
                if chunk.usage is not None:
                    usage = chunk.usage
            headers = dict(resp.headers)
    else:
        raw = api.with_raw_response.create(**kw)
        usage = raw.parse().usage
        headers = dict(raw.headers)
    extra = dict(usage.model_extra or {}) if usage is not None else {}
    return extra, headers


def run_workload(
    base_url: str,
    model: str,
    n: int = 24,
    concurrency: int = 4,
    max_tokens: int = 16,
    seed: int = 0,
    api_key: str = "unused",
    console: Any = None,
) -> WorkloadResult:
    try:
        import openai
    except ImportError:
        from wattserve.errors import EngineUnavailable

        raise EngineUnavailable(
            "the demo client needs the openai package: pip install openai"
        ) from None
    import httpx

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    result = WorkloadResult()
    lock = threading.Lock()
    items = workload(n, seed)

    def one(item: dict[str, Any]) -> None:
        try:
            extra, headers = _send(client, model, item, max_tokens)
        except Exception as exc:  # noqa: BLE001 - counted and shown, the demo goes on
            with lock:
                result.errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            result.ok += 1
            result.per_model[headers.get("x-wattserve-model", "?")] += 1
            result.per_replica[headers.get("x-wattserve-replica", "?")] += 1
            if extra.get("cache_hit"):
                result.hits += 1
            else:
                result.energy_j += float(extra.get("energy_j") or 0.0)
                result.energy_source = extra.get("energy_source") or result.energy_source

    progress = None
    if console is not None:
        from rich.progress import Progress

        progress = Progress(console=console, transient=True)
    result.sent = len(items)
    with ThreadPoolExecutor(concurrency) as pool:
        if progress is None:
            list(pool.map(one, items))
        else:
            with progress:
                task = progress.add_task("requests", total=len(items))
                for _ in pool.map(one, items):
                    progress.advance(task)
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    result.stats = httpx.get(root + "/stats", timeout=10).json()
    result.saved_j = float(result.stats.get("energy", {}).get("saved_j") or 0.0)
    return result


def print_report(r: WorkloadResult, url: str, console: Any) -> None:
    from rich.table import Table

    t = Table(title="gateway demo: mixed workload through the openai SDK")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("requests sent / answered", f"{r.sent} / {r.ok}")
    t.add_row("cache hits", f"{r.hits} ({r.hits / max(1, r.ok):.0%})")
    t.add_row(f"joules charged to misses ({r.energy_source or 'no meter'})", f"{r.energy_j:.3f} J")
    t.add_row("joules saved by the cache", f"{r.saved_j:.3f} J")
    for model, n in sorted(r.per_model.items()):
        t.add_row(f"answers from model {model}", str(n))
    for rep, n in sorted(r.per_replica.items()):
        t.add_row(f"  served by {rep}", str(n))
    console.print(t)
    meter = r.stats.get("energy", {}).get("meter")
    if meter:
        console.print(f"energy meter: {meter}")
        console.print(f"attribution: {r.stats['energy'].get('method')}")
    for e in r.errors[:5]:
        console.print(f"[red]error:[/red] {e}")
    console.print(f"metrics: {url}/metrics   stats: {url}/stats")
