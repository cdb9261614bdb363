"""Cache keys: tenant + model group + a canonical form of the request.

The gateway keys a request by the OpenAI body it received (``make_key(..., body=body)``):
that body, with ``model`` set to the replica's name, is what goes upstream, so two bodies
that are equal after the normalisations below send the same thing to the model and may
share an answer; any other difference gives another key. Every field is kept - message
``role``, ``content`` (a string and a list of parts stay distinct: servers join text parts
differently), ``name``, ``tool_calls``, ``tool_call_id`` and any other message field,
``tools``, ``tool_choice``, ``response_format``, ``logit_bias``, ``n``, ``seed``, every
sampling parameter, ``stop``, ``logprobs``/``top_logprobs``, ``parallel_tool_calls`` and
every field this module does not know - except:

- ``model``: the model group passed alongside stands for it (the concrete replica model is
  the router's and balancer's choice within that group);
- ``stream``: the gateway re-streams a cached answer in either shape;
- ``stream_options.include_usage`` / ``.continuous_usage_stats``: they add usage events, not
  text (the usage of a hit is rebuilt for the request at hand); other ``stream_options``
  fields are kept;
- ``user``, ``metadata``, ``store``, ``service_tier``: bookkeeping that no model reads.

Normalisations (each one is semantically neutral for OpenAI-compatible servers):

- object key order is irrelevant (keys are serialised sorted);
- numbers compare by value: ``1`` and ``1.0`` are one number (as in JSON); booleans are not
  numbers (``true`` differs from ``1``), strings are not numbers (``"1"`` differs from ``1``);
- a top-level or message-level field set to ``null`` equals the field left out (both mean
  "default" to pydantic-based servers and to llama.cpp); inside nested values (a tool's JSON
  schema, ``response_format``) ``null`` is kept, it can mean something there;
- ``stop``: a string equals the one-element list of it, and ``[]`` equals no ``stop``; the
  order of a list is kept (some engines check stop strings in order).

No default is filled in: a field left out differs from the same field set to its usual
default, because servers' defaults differ (a model's generation config can set its own
temperature). The gateway's own resolution of ``max_tokens`` (its configured default) is
added to the key, so gateways with other defaults sharing a store never share such keys.

``make_key`` without a body keys a ``Request`` (its fields and its ``extra`` mapping), for
callers that have no wire body. The tenant is hashed together with the rest, so one
tenant's key can never equal another's: isolation does not rely on any lookup-time check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from wattserve.types import Request

# top-level body fields that never change the answer's text
_IGNORED = frozenset({"model", "stream", "user", "metadata", "store", "service_tier"})
# stream_options fields that add usage events only
_USAGE_OPTIONS = frozenset({"include_usage", "continuous_usage_stats"})
# request fields whose answer holds more than the cache keeps (text and finish reason)
_RICH_ANSWER = ("logprobs", "top_logprobs", "prompt_logprobs")


_INF = float("inf")


class _NonFinite(float):
    """A NaN or infinity: orjson refuses the subclass, so the standard library writes it as a
    bare ``NaN``/``Infinity`` token (orjson would write ``null``, the encoding of ``None``)."""


def _canon(value: Any) -> Any:
    """JSON-ready form of ``value`` with numbers normalised (objects are sorted on output)."""
    t = type(value)
    if t is str or t is bool or value is None or t is int:
        return value
    if t is float:
        if value.is_integer():  # False for inf and nan
            return int(value)  # exact: 1.0 -> 1, 2.0**70 -> 2**70
        if value != value or value in (_INF, -_INF):
            return _NonFinite(value)
        return value
    if isinstance(value, Mapping):  # keys as JSON writes them (a Request's int keys -> str)
        return {k if type(k) is str else str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, bool):  # a bool subclass
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _canon(float(value))
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cache keys need JSON values, not {type(value).__name__}")


def _message(m: Any) -> Any:
    if not isinstance(m, Mapping):
        return _canon(m)
    return {k if type(k) is str else str(k): _canon(v) for k, v in m.items() if v is not None}


def canonical_body(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The output-determining part of an OpenAI request body (rules in the module docstring)."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if v is None or k in _IGNORED:
            continue
        if k == "messages" and isinstance(v, list):
            out[k] = [_message(m) for m in v]
        elif k == "stop":
            if isinstance(v, str):
                out[k] = [v]
            elif v != []:
                out[k] = _canon(v)
        elif k == "stream_options" and isinstance(v, Mapping):
            rest = {o: _canon(x) for o, x in v.items() if o not in _USAGE_OPTIONS}
            if rest:
                out[k] = rest
        else:
            out[k if type(k) is str else str(k)] = _canon(v)
    return {"endpoint": endpoint, "body": out}


def canonical_request(request: Request) -> dict[str, Any]:
    """The output-determining part of a ``Request``: what it asks for and every parameter.

    Leaves out the request id, arrival and deadline times, ``stream``, the expected
    ``input_tokens``, the concrete ``model`` and the tenant (hashed separately)."""
    out: dict[str, Any] = {"endpoint": request.endpoint}
    if request.messages:
        out["messages"] = [[m.role, m.content] for m in request.messages]
    else:
        out["prompt"] = request.prompt or ""
    out["max_tokens"] = request.max_tokens
    out["temperature"] = _canon(float(request.temperature))
    out["top_p"] = _canon(float(request.top_p))
    out["seed"] = request.seed
    out["stop"] = list(request.stop)
    out["ignore_eos"] = bool(request.ignore_eos)
    out["extra"] = canonical_body(request.endpoint, request.extra)["body"]
    return out


def _dumps_stdlib(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def _dumps(obj: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON. orjson is about 5x faster than the standard library
    (the key is the largest item of the gateway's own per-request CPU); the standard library
    writes what orjson refuses (integers beyond 64 bits, lone surrogates, ``_NonFinite``).
    Which writer serialises an object depends on the object alone, and each writer's output
    parses back to the object it wrote, so distinct canonical forms give distinct bytes."""
    try:
        return _orjson.dumps(obj, option=_orjson.OPT_SORT_KEYS)
    except (TypeError, _orjson.JSONEncodeError):
        return _dumps_stdlib(obj)


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep keys computable without it
    _dumps = _dumps_stdlib


def make_key(
    tenant: str, model_group: str, request: Request, body: Mapping[str, Any] | None = None
) -> str:
    """A stable key: ``<sha256 hex>`` of tenant, model group and the canonical request.

    With ``body`` (the OpenAI request body ``request`` was parsed from) the key is of the body
    plus the ``max_tokens`` the gateway resolved; without it, of ``request`` itself."""
    if body is not None:
        form: Any = ["body", canonical_body(request.endpoint, body), request.max_tokens]
    else:
        form = ["request", canonical_request(request)]
    payload = _dumps([str(tenant), str(model_group), form])
    return hashlib.sha256(payload).hexdigest()


def namespace(tenant: str, model_group: str) -> str:
    """The partition a semantic index searches within (never across tenants)."""
    return hashlib.sha256(json.dumps([str(tenant), str(model_group)]).encode()).hexdigest()[:32]


def _rich_answer(extra: Mapping[str, Any]) -> bool:
    """True when the answer may hold tool calls, log-probabilities or audio."""
    if (extra.get("tools") or extra.get("functions")) and extra.get(
        "tool_choice", extra.get("function_call")
    ) != "none":
        return True
    if any(extra.get(k) is not None and extra.get(k) is not False for k in _RICH_ANSWER):
        return True
    modalities = extra.get("modalities")
    return bool(extra.get("audio")) or (isinstance(modalities, list) and "audio" in modalities)


def is_cacheable(request: Request, cache_sampled: bool = False) -> bool:
    """Deterministic requests (temperature 0) are cacheable; with ``cache_sampled`` also
    seeded sampled ones (their output is reproducible on engines that honour ``seed``).

    Never cacheable: requests whose answer can carry more than the cache keeps (its text
    and finish reason): tool calls (``tools``/``functions`` unless ``tool_choice`` is
    ``"none"``), log-probabilities and audio; a hit would return the text without them."""
    if request.extra and _rich_answer(request.extra):
        return False
    if request.temperature == 0:
        return True
    return bool(cache_sampled and request.seed is not None)
