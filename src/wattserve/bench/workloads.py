"""Workloads -> ``list[Request]``: synthetic random prompts, dataset files, trace replay.

Random prompts use a real tokenizer when one is given (the local engine exposes one): the
prompt is decoded from random token ids and re-encoded until it has exactly the stated
number of tokens. Without a tokenizer the prompt is built from common English words, about
one token each for BPE tokenizers (an approximation; ``Request.input_tokens`` states the
target and the server's ``usage`` gives the real count).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wattserve.errors import ConfigError
from wattserve.types import Message, Request

# Short, common words: nearly always one BPE token each when preceded by a space.
_WORDS = (
    "the of and to in is was for on that with as by at from his her this but they have "
    "not are had were which one all their has been would there more when who will also "
    "time new can out about some only other two over into after first year may city most "
    "these then used world state where under made such part people many between both "
    "through well during three water area since long each school group life old"
).split()


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests plus, for trace replay, their recorded arrival offsets."""

    requests: list[Request]
    arrivals_s: list[float] | None = None
    token_counting: str = "tokenizer"


def _lengths(n: int, mean: int, ratio: float, rng: np.random.Generator) -> list[int]:
    """Uniform integers in [floor(mean*(1-ratio)), ceil(mean*(1+ratio))], at least 1 (as
    vLLM's --random-range-ratio)."""
    if ratio <= 0:
        return [mean] * n
    lo, hi = max(1, math.floor(mean * (1 - ratio))), max(1, math.ceil(mean * (1 + ratio)))
    return rng.integers(lo, hi + 1, size=n).tolist()


def _special_ids(tok: Any) -> set[int]:
    return set(getattr(tok, "all_special_ids", []) or [])


def _vocab_size(tok: Any) -> int:
    n = getattr(tok, "vocab_size", None) or len(tok)
    return int(n)


def tokenized_prompt(tok: Tokenizer, n_tokens: int, rng: np.random.Generator) -> str:
    """A prompt that ``tok`` encodes to exactly ``n_tokens`` tokens (no special tokens)."""
    special = _special_ids(tok)
    vocab = _vocab_size(tok)
    ids: list[int] = []
    for _ in range(8):
        while len(ids) < n_tokens:
            cand = rng.integers(0, vocab, size=n_tokens).tolist()
            ids.extend(t for t in cand if t not in special)
        text = tok.decode(ids[:n_tokens], skip_special_tokens=True)
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) == n_tokens:
            return text
        ids = ids[:n_tokens]  # too long: cut; too short: top up on the next pass
    # decode/encode did not settle in 8 passes: use the word approximation, then trim
    words = [_WORDS[i] for i in rng.integers(0, len(_WORDS), size=n_tokens)]
    text = " ".join(words)
    ids = tok.encode(text, add_special_tokens=False)[:n_tokens]
    return tok.decode(ids, skip_special_tokens=True)


def word_prompt(n_tokens: int, rng: np.random.Generator) -> str:
    """About ``n_tokens`` tokens of common words (approximation when no tokenizer exists)."""
    return " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), size=n_tokens))


def _request(i: int, prompt: str, max_tokens: int, endpoint: str, model: str, **kw: Any) -> Request:
    if endpoint == "chat":
        return Request(
            id=f"req-{i}",
            model=model,
            messages=(Message("user", prompt),),
            max_tokens=max_tokens,
            endpoint="chat",
            **kw,
        )
    return Request(
        id=f"req-{i}",
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        endpoint="completions",
        **kw,
    )


def random_workload(
    n: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
    model: str = "",
    endpoint: str = "completions",
    ignore_eos: bool = True,
) -> Workload:
    rng = np.random.default_rng(seed)
    ins = _lengths(n, input_len, range_ratio, rng)
    outs = _lengths(n, output_len, range_ratio, rng)
    reqs = []
    for i, (li, lo) in enumerate(zip(ins, outs, strict=True)):
        text = (
            tokenized_prompt(tokenizer, li, rng) if tokenizer is not None else word_prompt(li, rng)
        )
        reqs.append(
            _request(
                i, text, lo, endpoint, model, input_tokens=li, ignore_eos=ignore_eos, seed=seed
            )
        )
    return Workload(reqs, token_counting="tokenizer" if tokenizer is not None else "approx-words")


def _read_csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs of CSV ``text``. Strict: a quote that never closes is an
    error naming the line its record starts on (not one field holding the rest of the
    file); a quoted field keeps its line breaks."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for row in reader:
            if None in row:
                raise ConfigError(f"{path}:{reader.line_num}: more fields than the header names")
            rows.append((reader.line_num, dict(row)))
    except csv.Error as exc:
        start = reader.line_num + 1  # the line after the last record read
        if "unexpected end of data" in str(exc):
            raise ConfigError(
                f"{path}:{start}: a quoted field never closes (no matching '\"' before the end)"
            ) from None
        raise ConfigError(f"{path}:{start}: not valid CSV ({exc})") from None
    return rows


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs from a JSONL or CSV file; malformed lines name themselves."""
    if not path.is_file():
        raise ConfigError(f"dataset file not found: {path}")
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if path.suffix.lower() == ".csv":
        return _read_csv_rows(path, text)
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{no}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{no}: expected a JSON object per line")
        rows.append((no, obj))
    return rows


def _int_field(row: dict[str, Any], names: Sequence[str], where: str) -> int | None:
    for name in names:
        v = row.get(name)
        if v not in (None, ""):
            try:
                f = float(v)
                if f < 1 or not f.is_integer():
                    raise ValueError
                return int(f)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{where}: {name} must be a positive integer, got {v!r}"
                ) from None
    return None


_PROMPT_KEYS = ("prompt", "text", "input")
_OUT_KEYS = ("output_len", "max_tokens", "output_tokens")
_IN_KEYS = ("input_len", "input_tokens", "prompt_tokens")


def custom_workload(
    path: str | Path,
    n: int | None,
    output_len: int,
    model: str = "",
    endpoint: str = "completions",
    seed: int = 0,
    ignore_eos: bool = False,
) -> Workload:
    """JSONL or CSV: a ``prompt`` (or ``text``) column, optional ``output_len``/``max_tokens``."""
    p = Path(path)
    rows = _read_rows(p)
    if not rows:
        raise ConfigError(f"{p}: no rows")
    reqs = []
    for i, (no, row) in enumerate(rows):
        where = f"{p}:{no}"
        prompt = next((row[k] for k in _PROMPT_KEYS if row.get(k) not in (None, "")), None)
        if not isinstance(prompt, str):
            raise ConfigError(f"{where}: needs a non-empty 'prompt' field")
        out = _int_field(row, _OUT_KEYS, where) or output_len
        reqs.append(_request(i, prompt, out, endpoint, model, seed=seed, ignore_eos=ignore_eos))
    if n is not None:
        reqs = (
            [replace(reqs[i % len(reqs)], id=f"req-{i}") for i in range(n)]
            if n > len(reqs)
            else reqs[:n]
        )
    return Workload(reqs, token_counting="server")


def trace_workload(
    path: str | Path,
    n: int | None,
    output_len: int,
    model: str = "",
    endpoint: str = "completions",
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
    ignore_eos: bool = True,
) -> Workload:
    """Rows with ``timestamp`` (seconds; or ``timestamp_ms``) plus either a prompt or
    ``input_len``/``output_len``. Arrivals are the timestamps relative to the first row."""
    p = Path(path)
    rows = _read_rows(p)
    if not rows:
        raise ConfigError(f"{p}: no rows")
    rng = np.random.default_rng(seed)
    parsed: list[tuple[float, Request]] = []
    for i, (no, row) in enumerate(rows):
        where = f"{p}:{no}"
        try:
            if row.get("timestamp") not in (None, ""):
                ts = float(row["timestamp"])
            elif row.get("timestamp_ms") not in (None, ""):
                ts = float(row["timestamp_ms"]) / 1000.0
            else:
                raise ConfigError(f"{where}: needs a 'timestamp' (s) or 'timestamp_ms' field")
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: timestamp is not a number: {row.get('timestamp')!r}"
            ) from None
        out = _int_field(row, _OUT_KEYS, where) or output_len
        prompt = next((row[k] for k in _PROMPT_KEYS if row.get(k) not in (None, "")), None)
        n_in = _int_field(row, _IN_KEYS, where)
        if prompt is None:
            if n_in is None:
                raise ConfigError(f"{where}: needs a 'prompt' or an 'input_len' field")
            prompt = (
                tokenized_prompt(tokenizer, n_in, rng)
                if tokenizer is not None
                else word_prompt(n_in, rng)
            )
        parsed.append(
            (
                ts,
                _request(
                    i,
                    str(prompt),
                    out,
                    endpoint,
                    model,
                    input_tokens=n_in,
                    seed=seed,
                    ignore_eos=ignore_eos,
                ),
            )
        )
    parsed.sort(key=lambda x: x[0])
    if n is not None:
        parsed = parsed[:n]
    t0 = parsed[0][0]
    reqs = [replace(r, id=f"req-{i}", arrival_s=ts - t0) for i, (ts, r) in enumerate(parsed)]
    return Workload(reqs, arrivals_s=[r.arrival_s for r in reqs], token_counting="server")


def sharegpt_workload(
    path: str | Path,
    n: int | None,
    output_len: int,
    model: str = "",
    endpoint: str = "chat",
    seed: int = 0,
) -> Workload:
    """A ShareGPT-style JSON list: the first human turn is the prompt; --output-len caps replies."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"dataset file not found: {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not a ShareGPT JSON list ({exc})") from None
    reqs: list[Request] = []
    for item in data if isinstance(data, list) else []:
        turns = item.get("conversations") or [] if isinstance(item, dict) else []
        first = next((t.get("value") for t in turns if t.get("from") in ("human", "user")), None)
        if first:
            reqs.append(_request(len(reqs), first, output_len, endpoint, model, seed=seed))
    if not reqs:
        raise ConfigError(f"{p}: no conversations with a human turn")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reqs)).tolist()
    reqs = [replace(reqs[j], id=f"req-{i}") for i, j in enumerate(order[: n or len(order)])]
    return Workload(reqs, token_counting="server")


def build_workload(cfg: Any, tokenizer: Tokenizer | None = None) -> Workload:
    """From a ``BenchConfig``."""
    model, ep = cfg.model, cfg.endpoint
    if cfg.dataset_name == "random":
        return random_workload(
            cfg.num_prompts,
            cfg.input_len,
            cfg.output_len,
            cfg.random_range_ratio,
            cfg.seed,
            tokenizer,
            model,
            ep,
            cfg.ignore_eos,
        )
    if cfg.dataset_name == "custom":
        return custom_workload(
            cfg.dataset_path, cfg.num_prompts, cfg.output_len, model, ep, cfg.seed
        )
    if cfg.dataset_name == "trace":
        return trace_workload(
            cfg.dataset_path,
            cfg.num_prompts,
            cfg.output_len,
            model,
            ep,
            cfg.seed,
            tokenizer,
            cfg.ignore_eos,
        )
    if cfg.dataset_name == "sharegpt":
        return sharegpt_workload(
            cfg.dataset_path, cfg.num_prompts, cfg.output_len, model, ep, cfg.seed
        )
    raise ConfigError(f"unknown --dataset-name {cfg.dataset_name!r}")
