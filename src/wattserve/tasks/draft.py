"""``Draft``: a generated question before the family numbers it into a ``TaskItem``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wattserve.tasks.items import CheckerKind


@dataclass(frozen=True, slots=True)
class Draft:
    key: str  # identifies the question (not its few-shot context): no two items share one
    difficulty: int
    prompt: str
    answer: str
    checker: CheckerKind
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
