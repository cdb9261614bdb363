"""The CLI's output: a stdout console that never cuts a table, and JSON for scripts.

rich sizes a console that is not a terminal (a pipe, a file, a captured test) to 80 columns
and squeezes wider tables into it, cutting cells to '…'. Off a terminal there is no screen
to fit, so ``stdout_console`` renders at the table's own width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# wide enough for any table the CLI prints; rich lays a table out at its natural width and
# only pads to the console's width when asked to expand, so this costs nothing
UNBOUNDED_WIDTH = 100_000


def stdout_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal, unbounded elsewhere."""
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        return console
    return Console(width=UNBOUNDED_WIDTH)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: dataclasses and mappings as objects, tuples and sets as
    lists, paths as strings, NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return str(obj)


def print_json(obj: Any) -> None:
    """Write ``obj`` to stdout as one indented JSON document."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()
