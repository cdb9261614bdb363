"""Request traces: what was asked, by whom, and how many tokens went in and out.

The simulator's fitted replay (``wattserve.sim.fitted``) reads one row per request, in
arrival order. The format is the benchmark's ``requests.jsonl`` record plus the prompt:

- ``prompt`` (a string) or ``messages`` (a list of ``{"role", "content"}``): the text the
  router scores and the cache keys; or, without either, a ``request_id`` found in a prompts
  file (``--prompts``: JSONL rows of ``request_id`` with ``prompt`` or ``messages``);
- ``input_tokens``, ``output_tokens``: the token counts the fits are evaluated at;
- optional: ``model`` (a served model, ``auto`` or ``router-<name>[-<threshold>]``; empty
  or missing means ``auto``), ``tenant``, ``max_tokens`` (part of the cache key; default
  ``output_tokens``), ``temperature`` (sampled requests are not cached), ``endpoint``,
  ``text`` (the answer: the cache charges ``len(text) + 64`` bytes like the gateway,
  else ``4 * output_tokens + 64``), ``energy_j`` (metered joules of the served answer),
  ``cache_hit``, ``error`` (rows with an error are left out), ``sent_s`` (rows are sorted
  by it when every row has it; a benchmark writes records as requests finish).

``trace_row`` writes such a row, so a served run's request log is a trace. A run directory
(``requests.jsonl`` inside) is read as its file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.types import Endpoint, Message, Request

PROMPT_FIELDS = ("prompt", "messages")


@dataclass(frozen=True)
class TracedRequest:
    """One request of a trace, ready to replay."""

    request: Request  # prompt or messages, max_tokens, temperature, tenant, model group
    input_tokens: int
    output_tokens: int
    size: int  # what the gateway's cache charges the entry
    energy_j: float | None = None  # metered joules of the served answer, when recorded
    cache_hit: bool = False  # served from the gateway's cache

    @property
    def group(self) -> str:
        return self.request.model or "auto"


def trace_row(
    request: Request,
    input_tokens: int,
    output_tokens: int,
    answer: str | None = None,
    energy_j: float | None = None,
    cache_hit: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    """The trace row of one served request (what a gateway's request log writes)."""
    row: dict[str, Any] = {
        "request_id": request.id,
        "model": request.model,
        "tenant": request.tenant,
        "endpoint": request.endpoint,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "cache_hit": bool(cache_hit),
        "energy_j": energy_j,
        "error": error,
    }
    if request.messages:
        row["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    else:
        row["prompt"] = request.prompt or ""
    if answer is not None:
        row["text"] = answer
    return row


def is_request_trace(path: str | Path) -> bool:
    """True when ``path`` (a file or run directory) holds request rows rather than the
    ``query`` + ``cost_<model>`` columns of a cost trace."""
    p = Path(path)
    if p.is_dir():
        return True
    rows = _read_rows(p, limit=1)
    return bool(rows) and "query" not in rows[0]


def load_request_trace(path: str | Path, prompts: str | Path | None = None) -> list[TracedRequest]:
    """The requests of a trace file or run directory, in arrival order."""
    p = Path(path)
    if p.is_dir():
        p = p / "requests.jsonl"
        if not p.is_file():
            raise ConfigError(f"{path}: a run directory must hold requests.jsonl")
    rows = _read_rows(p)
    texts = _read_prompts(Path(prompts)) if prompts is not None else {}
    if rows and all(isinstance(r.get("sent_s"), (int, float)) for r in rows):
        rows = sorted(rows, key=lambda r: float(r["sent_s"]))
    out = []
    for n, row in enumerate(rows, 1):
        if row.get("error") not in (None, "", False):
            continue
        out.append(_traced(row, texts, f"{p} row {n}"))
    if not out:
        raise ConfigError(f"{p}: no successful requests to replay")
    return out


def _read_rows(p: Path, limit: int | None = None, kind: str = "trace") -> list[dict[str, Any]]:
    from wattserve.readers import read_csv, read_jsonl

    if not p.is_file():
        raise ConfigError(f"{kind} file not found: {p}")
    if p.suffix in (".jsonl", ".json"):
        rows = read_jsonl(p)
        bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ConfigError(f"{p}:{bad}: a trace row must be a JSON object")
    else:
        df = read_csv(p)
        rows = [{str(k): _plain(v) for k, v in r.items()} for r in df.to_dict("records")]
    return rows[:limit] if limit is not None else rows


def _plain(v: Any) -> Any:
    """CSV cells as JSON would give them (NaN -> None, numpy scalars -> Python)."""
    if isinstance(v, float) and v != v:
        return None
    return v.item() if hasattr(v, "item") else v


def _read_prompts(p: Path) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for n, row in enumerate(_read_rows(p, kind="prompts"), 1):
        if "request_id" not in row or not any(f in row for f in PROMPT_FIELDS):
            raise ConfigError(f"{p} row {n}: a prompts row needs request_id and prompt/messages")
        out[str(row["request_id"])] = row
    return out


def _messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"{where}: messages must be a non-empty list of role/content objects")
    out = []
    for m in value:
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
            raise ConfigError(f"{where}: each message needs a string 'content'")
        out.append(Message(str(m.get("role", "user")), m["content"]))
    return tuple(out)


def _count(row: Mapping[str, Any], name: str, where: str) -> int:
    v = row.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
        raise ConfigError(f"{where}: {name} must be a non-negative whole number, not {v!r}")
    return int(v)


def _traced(
    row: Mapping[str, Any], texts: Mapping[str, Mapping[str, Any]], where: str
) -> TracedRequest:
    source = row
    if not any(row.get(f) is not None for f in PROMPT_FIELDS):
        source = texts.get(str(row.get("request_id")), {})
        if not source:
            raise ConfigError(
                f"{where}: no prompt or messages (and no prompts-file row for request_id "
                f"{row.get('request_id')!r})"
            )
    n_in, n_out = _count(row, "input_tokens", where), _count(row, "output_tokens", where)
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    if source.get("messages") is not None:
        messages = _messages(source["messages"], where)
    elif isinstance(source.get("prompt"), str):
        prompt = source["prompt"]
    else:
        raise ConfigError(f"{where}: prompt must be a string")
    max_tokens = row.get("max_tokens")
    temperature = row.get("temperature")
    named = row.get("endpoint") or ("chat" if messages else "completions")
    if named not in ("chat", "completions"):
        raise ConfigError(f"{where}: endpoint must be chat or completions, not {named!r}")
    endpoint: Endpoint = "chat" if named == "chat" else "completions"
    req = Request(
        id=str(row.get("request_id", where)),
        model=str(row.get("model") or "auto"),
        prompt=prompt,
        messages=messages,
        max_tokens=_count(row, "max_tokens", where) if max_tokens is not None else n_out,
        temperature=float(temperature) if temperature is not None else 0.0,
        endpoint=endpoint,
        input_tokens=n_in,
        tenant=str(row.get("tenant") or "default"),
    )
    answer = row.get("text")
    size = len(answer) + 64 if isinstance(answer, str) else 4 * n_out + 64
    energy = row.get("energy_j")
    return TracedRequest(
        req,
        n_in,
        n_out,
        size,
        float(energy) if isinstance(energy, (int, float)) else None,
        bool(row.get("cache_hit") or False),
    )
