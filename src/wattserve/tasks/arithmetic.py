"""Few-shot arithmetic: ``a + b`` and ``a - b`` with operands of 1..4 digits (the difficulty).

    47 + 18 = 65
    90 - 33 = 57
    ...
    58 + 23 =

Answers are checked as numbers. Subtractions keep ``a >= b`` so no answer is negative.
"""

from __future__ import annotations

import random

from wattserve.tasks.draft import Draft

LEVELS = (1, 2, 3, 4)
SHOTS = 5


def _operands(rng: random.Random, digits: int) -> tuple[int, str, int, int]:
    lo, hi = (1, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    return a, op, b, a + b if op == "+" else a - b


def build(rng: random.Random, level: int, question: object = None) -> Draft:
    """One question with ``level``-digit operands and ``SHOTS`` solved examples before it."""
    a, op, b, c = _operands(rng, level)
    lines = []
    for _ in range(SHOTS):
        x, xop, y, z = _operands(rng, level)
        lines.append(f"{x} {xop} {y} = {z}")
    lines.append(f"{a} {op} {b} =")
    return Draft(
        key=f"{a}{op}{b}",
        difficulty=level,
        prompt="\n".join(lines),
        answer=str(c),
        checker="numeric",
        meta={"op": op, "digits": level},
    )
