"""Per-request joules of one benchmark point, from the sampler's series and the request spans.

Each request is charged its share of the metered devices' joules over its lifetime with
``energy.attribution.attribute_phases`` (the method named in ``run.json``: ``active_time``
splits every instant's energy equally among the requests in flight, so requests of several
replicas sharing the device split it among them; ``tokens`` / ``total_tokens`` split by
token counts). The window is the point's ``whole`` window and idle energy is spread in
proportion, so a point's requests add up to the window's joules. With ``active_time`` each
request's joules are also split at its first content chunk (prefill, decode).

The fields set on each record (``requests.jsonl``):
``energy_j``, ``prefill_energy_j``, ``decode_energy_j``, ``energy_source`` (the meter's
source: ``nvml``, ``rapl``, ``modeled``, ``replay``, joined with ``+`` for several devices)
and ``energy_split`` (the method).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wattserve.types import Completion, Measurement

ENERGY_FIELDS = ("energy_j", "prefill_energy_j", "decode_energy_j", "energy_source", "energy_split")


def attribute_point(
    completions: Sequence[Completion],
    records: Sequence[dict[str, Any]],
    sampler: Any,
    measurements: Sequence[Measurement],
    method: str,
) -> str | None:
    """Set the energy fields on ``records`` (one per completion, same order), in place.

    Returns a note when the point cannot be attributed (no ``whole`` window, nothing
    metered, a window outside the series); the records are then left without joules.
    """
    from wattserve.energy.attribution import attribute_phases

    whole = next((m for m in measurements if m.window == "whole"), None)
    if sampler is None or whole is None or not completions:
        return None if sampler is None else "no whole window: requests carry no joules"
    try:
        att, parts = attribute_phases(
            completions, sampler, method, window=(whole.start_s, whole.end_s)
        )
    except Exception as exc:  # noqa: BLE001 - a window outside the series: keep the records
        return f"per-request energy failed: {exc}"
    sources = set(att.sources.values())
    if not sources or sources == {"null"}:
        return None
    source = "+".join(sorted(sources))
    for c, rec in zip(completions, records, strict=True):
        e = parts.get(c.request_id)
        if e is None:
            continue
        rec.update(
            energy_j=e.energy_j,
            prefill_energy_j=e.prefill_j,
            decode_energy_j=e.decode_j,
            energy_source=source,
            energy_split=method,
        )
    return None
