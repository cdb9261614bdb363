"""Task files: one JSON object per line (``TaskItem.to_dict``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from wattserve.errors import ConfigError
from wattserve.tasks.items import TaskItem


def write_tasks(path: str | Path, items: Iterable[TaskItem]) -> int:
    """Write items as JSONL (atomically: a temporary file renamed into place); returns the count."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(p)
    return n


def read_tasks(path: str | Path) -> list[TaskItem]:
    """Read and validate a task file; ids must be unique. Bad input raises ``ConfigError``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"task file not found: {p}")
    items: list[TaskItem] = []
    seen: set[str] = set()
    with open(p, encoding="utf-8") as f:
        for k, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{p}:{k}: not JSON ({exc.msg})") from None
            item = TaskItem.from_dict(d, where=f"{p}:{k}")
            if item.id in seen:
                raise ConfigError(f"{p}:{k}: duplicate item id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    if not items:
        raise ConfigError(f"{p}: no task items")
    return items
