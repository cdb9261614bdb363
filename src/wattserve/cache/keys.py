"""Cache keys: tenant + model group + a canonical form of the request.

The canonical form holds what can change the output: the endpoint shape, the messages
(role and content) or the prompt, and every sampling parameter (``max_tokens``,
``temperature``, ``top_p``, ``seed``, ``stop``, ``ignore_eos`` and the ``extra`` mapping).
It leaves out what cannot: the request id, arrival and deadline times, ``stream`` (the
gateway can re-stream a cached answer), the expected ``input_tokens`` and the concrete
``model`` (the caller passes the model group it routes within).

The tenant is hashed together with the rest, so one tenant's key can never equal
another's: isolation does not rely on any lookup-time check.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from wattserve.types import Request


def _norm(value: Any) -> Any:
    """JSON-ready, order-independent form of a parameter value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
            return int(value)  # 0 and 0.0 are the same temperature
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _norm(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if hasattr(value, "role") and hasattr(value, "content"):
        return [value.role, value.content]
    return repr(value)


def _num(value: float) -> Any:
    """``_norm`` of a float parameter (the gateway's hot path: one call, no type dispatch)."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:  # False for inf and nan
        return int(value)
    return repr(value)


def canonical_request(request: Request) -> dict[str, Any]:
    """The output-determining part of ``request`` as a plain, sorted structure."""
    body: dict[str, Any] = {"endpoint": request.endpoint}
    if request.messages:
        body["messages"] = [[m.role, m.content] for m in request.messages]
    else:
        body["prompt"] = request.prompt or ""
    body["max_tokens"] = request.max_tokens
    body["temperature"] = _num(request.temperature)
    body["top_p"] = _num(request.top_p)
    body["seed"] = request.seed
    body["stop"] = sorted(request.stop) if request.stop else []
    body["ignore_eos"] = bool(request.ignore_eos)
    body["extra"] = _norm(dict(request.extra)) if request.extra else {}
    return body


def _dumps_stdlib(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def _dumps(obj: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON; orjson writes the same bytes as ``_dumps_stdlib`` for the
    canonical form (floats are already ints or reprs) about 5x faster: the key is the largest
    item of the gateway's own per-request CPU. Falls back to the standard library for what
    orjson refuses (integers beyond 64 bits, lone surrogates)."""
    try:
        return _orjson.dumps(obj, option=_orjson.OPT_SORT_KEYS)
    except (TypeError, _orjson.JSONEncodeError):
        return _dumps_stdlib(obj)


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep keys computable without it
    _dumps = _dumps_stdlib


def make_key(tenant: str, model_group: str, request: Request) -> str:
    """A stable key: ``<sha256 hex>`` of tenant, model group and the canonical request."""
    payload = _dumps([str(tenant), str(model_group), canonical_request(request)])
    return hashlib.sha256(payload).hexdigest()


def namespace(tenant: str, model_group: str) -> str:
    """The partition a semantic index searches within (never across tenants)."""
    return hashlib.sha256(json.dumps([str(tenant), str(model_group)]).encode()).hexdigest()[:32]


def is_cacheable(request: Request, cache_sampled: bool = False) -> bool:
    """Deterministic requests (temperature 0) are cacheable; with ``cache_sampled`` also
    seeded sampled ones (their output is reproducible on engines that honour ``seed``)."""
    if request.temperature == 0:
        return True
    return bool(cache_sampled and request.seed is not None)
