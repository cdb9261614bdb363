"""Families with long answers (about 10-30 output tokens): sequences and word lists.

``sequence``: continue an arithmetic sequence for five terms; difficulty 1 (count on by
one), 2 (steps of 2, 5 or 10 from a multiple of the step), 3 (two-digit start, step 3-9)::

    Sequence: 45, 50, 55, 60
    Next five: 65, 70, 75, 80, 85

``repeat-list``: write a list of distinct nouns out again; difficulty = list length
(1: six words, 2: eight, 3: ten)::

    List: cat, river, stone, apple, cloud, lamp
    Again: cat, river, stone, apple, cloud, lamp

Both are checked exactly on the normalised text (``"65, 70, 75"`` reads as
``"65 70 75"``), so every term must be right and in order. Their answers run to about
10-30 output tokens, several times the short families' 1-8, which is what their
``max_tokens`` budget (``MAX_TOKENS``) says before a request is answered. The solved
examples hold answers as long as the question's, so the prompts stay two to three times
longer than the answers (about 90-110 prompt tokens).
"""

from __future__ import annotations

import random

from wattserve.tasks.draft import Draft
from wattserve.tasks.tables import nouns

LEVELS = (1, 2, 3)
SHOTS = 2  # the shots hold long answers: few of them keep the prompt short
SHOWN = 4  # terms shown
NEXT = 5  # terms asked for
MAX_TOKENS = 48  # the families' answer budget: the longest answers are about 35 tokens
LIST_LENGTHS = {1: 6, 2: 8, 3: 10}


def _progression(rng: random.Random, level: int) -> list[int]:
    if level == 1:  # counting on
        start, step = rng.randint(1, 90), 1
    elif level == 2:  # round steps from a multiple of the step
        step = rng.choice((2, 5, 10))
        start = step * rng.randint(1, 40)
    else:
        start, step = rng.randint(10, 99), rng.randint(3, 9)
    return [start + k * step for k in range(SHOWN + NEXT)]


def _terms(xs: list[int]) -> str:
    return ", ".join(str(x) for x in xs)


def build_sequence(rng: random.Random, level: int, question: object = None) -> Draft:
    """Four terms of a progression and the next five, after ``SHOTS`` solved examples."""
    blocks = []
    for _ in range(SHOTS):
        s = _progression(rng, level)
        blocks.append(f"Sequence: {_terms(s[:SHOWN])}\nNext five: {_terms(s[SHOWN:])}")
    q = _progression(rng, level)
    blocks.append(f"Sequence: {_terms(q[:SHOWN])}\nNext five:")
    return Draft(
        key=_terms(q[:SHOWN]),
        difficulty=level,
        prompt="\n\n".join(blocks),
        answer=_terms(q[SHOWN:]),
        checker="exact",
        meta={"start": q[0], "step": q[1] - q[0]},
    )


def _words(rng: random.Random, level: int) -> list[str]:
    return rng.sample([n.word for n in nouns()], LIST_LENGTHS[level])


def build_repeat(rng: random.Random, level: int, question: object = None) -> Draft:
    """A list of distinct nouns written out again, after ``SHOTS`` examples."""
    blocks = []
    for _ in range(SHOTS):
        w = ", ".join(_words(rng, level))
        blocks.append(f"List: {w}\nAgain: {w}")
    q = ", ".join(_words(rng, level))
    blocks.append(f"List: {q}\nAgain:")
    return Draft(
        key=q,
        difficulty=level,
        prompt="\n\n".join(blocks),
        answer=q,
        checker="exact",
        meta={"words": LIST_LENGTHS[level]},
    )
