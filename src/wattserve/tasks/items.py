"""``TaskItem``: one checkable question with its reference answer and how to check it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wattserve.errors import ConfigError

CheckerKind = Literal["exact", "numeric", "choice", "regex"]
CHECKERS: tuple[str, ...] = ("exact", "numeric", "choice", "regex")
FIELDS = ("id", "family", "difficulty", "prompt", "answer", "checker")


@dataclass(frozen=True, slots=True)
class TaskItem:
    """A few-shot completion prompt whose answer is read from the first line of the output.

    ``checker`` says how: ``exact`` (normalised text equals ``answer``), ``numeric`` (the
    first number equals ``answer``), ``choice`` (the option letter, or the option's text,
    is ``answer``; ``choices`` holds the option texts in letter order) or ``regex``
    (``pattern`` matches the whole normalised answer; used where several forms are right).
    ``max_tokens`` is the answer budget its requests are sent with (the family's; None:
    the evaluation's default), known before the item is answered.
    """

    id: str
    family: str
    difficulty: int
    prompt: str
    answer: str
    checker: CheckerKind
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "family": self.family,
            "difficulty": self.difficulty,
            "prompt": self.prompt,
            "answer": self.answer,
            "checker": self.checker,
        }
        if self.pattern is not None:
            d["pattern"] = self.pattern
        if self.choices:
            d["choices"] = list(self.choices)
        if self.meta:
            d["meta"] = dict(self.meta)
        if self.max_tokens is not None:
            d["max_tokens"] = self.max_tokens
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "item") -> TaskItem:
        """Validate one record; a missing or mistyped field raises ``ConfigError`` naming it."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a JSON object")
        missing = [k for k in FIELDS if k not in d]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
        for k in ("id", "family", "prompt", "answer", "checker"):
            if not isinstance(d[k], str) or (k != "prompt" and not d[k]):
                raise ConfigError(f"{where}: {k!r} must be a non-empty string")
        if d["checker"] not in CHECKERS:
            raise ConfigError(
                f"{where}: unknown checker {d['checker']!r} (choose {', '.join(CHECKERS)})"
            )
        diff = d["difficulty"]
        if not isinstance(diff, int) or isinstance(diff, bool):
            raise ConfigError(f"{where}: 'difficulty' must be an integer")
        pattern = d.get("pattern")
        if d["checker"] == "regex" and not isinstance(pattern, str):
            raise ConfigError(f"{where}: a regex item needs a 'pattern' string")
        choices = d.get("choices") or ()
        if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
            raise ConfigError(f"{where}: 'choices' must be a list of strings")
        if d["checker"] == "choice" and not choices:
            raise ConfigError(f"{where}: a choice item needs 'choices'")
        meta = d.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise ConfigError(f"{where}: 'meta' must be an object")
        budget = d.get("max_tokens")
        if budget is not None and (
            not isinstance(budget, int) or isinstance(budget, bool) or budget < 1
        ):
            raise ConfigError(f"{where}: 'max_tokens' must be a positive integer")
        return cls(
            id=d["id"],
            family=d["family"],
            difficulty=diff,
            prompt=d["prompt"],
            answer=d["answer"],
            checker=d["checker"],
            pattern=pattern,
            choices=tuple(choices),
            meta=dict(meta),
            max_tokens=budget,
        )
