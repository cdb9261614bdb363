"""The gateway's request log: one JSONL row per answered request (``request_log: FILE``).

Each row is a request trace row (``wattserve.sim.request_trace.trace_row``: the request as
asked, its token counts, the answer's text and joules, whether the cache answered), plus
the model that answered, the replica and the energy source (the meter's, or ``fitted``), so
the log replays through ``wattserve simulate --fits FITS --trace LOG --router ROUTER``.
Prompts and answers are in it: it is written only when configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson

from wattserve.sim.request_trace import trace_row
from wattserve.types import Request


class RequestLog:
    """Appends one row per request to ``path`` (line-buffered: a crash keeps what was written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] | None = self.path.open("ab")
        self.rows = 0

    def write(
        self,
        request: Request,
        served_model: str,
        input_tokens: int,
        output_tokens: int,
        text: str | None,
        energy_j: float | None,
        energy_source: str,
        cache_hit: bool = False,
        error: str | None = None,
        replica: str | None = None,
        **extra: Any,
    ) -> None:
        if self._f is None:
            return
        row = trace_row(request, input_tokens, output_tokens, text, energy_j, cache_hit, error)
        row.update(served_model=served_model, energy_source=energy_source, replica=replica)
        row.update(extra)
        self._f.write(orjson.dumps(row) + b"\n")
        self._f.flush()
        self.rows += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
