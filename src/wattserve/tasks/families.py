"""The task families and ``make_tasks``: seeded, deterministic generation of ``TaskItem``s.

A family has difficulty levels, an optional finite pool of questions per level, and a
``build`` that turns (rng, level, question) into a ``Draft`` with its few-shot context.
Items are spread evenly over the levels (round robin). Each item carries its family's
``max_tokens``, the answer budget a request for it is sent with, so a request's expected
output length is known before it is answered. No question repeats within a
family while any level still has fresh ones; after every pool is used up, questions come
round again with new examples and ``meta["repeat"]`` counts the round.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wattserve.errors import ConfigError
from wattserve.tasks import arithmetic, facts, lists, words
from wattserve.tasks.draft import Draft
from wattserve.tasks.items import TaskItem

MAX_DRAWS = 1000  # unbounded families: attempts to find a question not yet used
SHORT_MAX_TOKENS = 12  # the budget of the short-answer families (answers of 1-8 tokens)


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    levels: tuple[int, ...]
    build: Callable[[random.Random, int, Any], Draft]
    pool: Callable[[int], list[Any]] | None = None  # None: build draws its own question
    max_tokens: int = SHORT_MAX_TOKENS  # the answer budget of its items' requests


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "arithmetic",
            "few-shot a+b / a-b, difficulty = digits per operand (1-4); numeric check",
            arithmetic.LEVELS,
            arithmetic.build,
        ),
        Family(
            "facts",
            "complete a sentence with a country's capital or continent, difficulty = "
            "familiarity tier (1-3); exact check (regex where several names are right)",
            facts.LEVELS,
            facts.build,
            facts.pool,
        ),
        Family(
            "facts-hard",
            "the facts family at tiers 2-3 only (the less familiar countries); exact check",
            facts.HARD_LEVELS,
            facts.build,
            facts.pool,
        ),
        Family(
            "facts-mc",
            "the same facts as four-option multiple choice, difficulty = tier (1-3); "
            "choice check on the letter",
            facts.LEVELS,
            facts.build_mc,
            facts.pool,
        ),
        Family(
            "facts-options",
            "the facts-mc questions with the four options unlettered, answered with the "
            "option's text, difficulty = tier (1-3); choice check on the text",
            facts.LEVELS,
            facts.build_options,
            facts.pool,
        ),
        Family(
            "words",
            "first letter, plural, last letter, reverse short / long word "
            "(difficulty 1-5); exact check (regex for plurals with variants)",
            words.LEVELS,
            words.build,
            words.pool,
        ),
        Family(
            "letters",
            "first letter (1) or last letter (2) of a noun: the words family's letter "
            "operations alone; exact check",
            words.LETTER_LEVELS,
            words.build_letters,
            words.letters_pool,
        ),
        Family(
            "sequence",
            "continue an arithmetic sequence for five terms, difficulty = step (1: one, "
            "2: 2/5/10, 3: 3-9); exact check; long answers",
            lists.LEVELS,
            lists.build_sequence,
            max_tokens=lists.MAX_TOKENS,
        ),
        Family(
            "repeat-list",
            "write a list of nouns again, difficulty = list length (6, 8, 10 words); "
            "exact check; long answers",
            lists.LEVELS,
            lists.build_repeat,
            max_tokens=lists.MAX_TOKENS,
        ),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown task family {name!r}: choose from {', '.join(FAMILIES)}"
        ) from None


def _rng(name: str, seed: int, salt: str = "") -> random.Random:
    return random.Random(f"wattserve-tasks:{name}:{seed}:{salt}")  # str seeds hash stably


class _Pools:
    """Per-level queues of unused questions, shuffled by the seed; refilled when all run dry."""

    def __init__(self, fam: Family, levels: Sequence[int], seed: int) -> None:
        assert fam.pool is not None
        self.fam, self.levels, self.seed = fam, list(levels), seed
        self.round = 0
        self.queues: dict[int, list[Any]] = {}
        self._fill()

    def _fill(self) -> None:
        assert self.fam.pool is not None
        for lv in self.levels:
            q = list(self.fam.pool(lv))
            _rng(self.fam.name, self.seed, f"pool:{lv}:{self.round}").shuffle(q)
            self.queues[lv] = q
        if not any(self.queues.values()):
            raise ConfigError(f"family {self.fam.name!r} has no questions at these levels")

    def take(self, level: int) -> tuple[int, Any]:
        order = self.levels[self.levels.index(level) :] + self.levels[: self.levels.index(level)]
        for _ in range(2):
            for lv in order:
                if self.queues[lv]:
                    return lv, self.queues[lv].pop()
            self.round += 1
            self._fill()
        raise ConfigError(f"family {self.fam.name!r} ran out of questions")  # pragma: no cover


def make_tasks(
    name: str, n: int, seed: int = 0, levels: Sequence[int] | None = None
) -> list[TaskItem]:
    """``n`` items of family ``name``; the same (name, n, seed, levels) gives the same items."""
    fam = family(name)
    if n < 1:
        raise ConfigError("--n must be at least 1")
    lv = list(fam.levels if not levels else levels)
    bad = [x for x in lv if x not in fam.levels]
    if bad:
        raise ConfigError(
            f"family {name!r} has difficulty levels {', '.join(map(str, fam.levels))}, "
            f"not {', '.join(map(str, bad))}"
        )
    pools = _Pools(fam, lv, seed) if fam.pool is not None else None
    rng = _rng(name, seed)
    seen: set[str] = set()
    items: list[TaskItem] = []
    for i in range(n):
        level = lv[i % len(lv)]
        if pools is not None:
            level, question = pools.take(level)
            draft = fam.build(rng, level, question)
            repeat = pools.round
        else:
            for _ in range(MAX_DRAWS):
                draft = fam.build(rng, level, None)
                if draft.key not in seen:
                    break
            repeat = int(draft.key in seen)
        seen.add(draft.key)
        meta = dict(draft.meta)
        if repeat:
            meta["repeat"] = repeat
        items.append(
            TaskItem(
                id=f"{name}-s{seed}-{i:05d}",
                family=name,
                difficulty=draft.difficulty,
                prompt=draft.prompt,
                answer=draft.answer,
                checker=draft.checker,
                pattern=draft.pattern,
                choices=draft.choices,
                meta=meta,
                max_tokens=fam.max_tokens,
            )
        )
    return items
