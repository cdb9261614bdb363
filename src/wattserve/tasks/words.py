"""Word manipulation on the shipped noun list; the operation sets the difficulty.

``words``: 1 first letter, 2 plural, 3 last letter, 4 reverse a 3-4 letter word, 5 reverse
a 6-8 letter word (character-level work that sub-word tokenizers make hard)::

    Word: garden
    Reversed: nedrag

    Word: pencil
    Reversed:
"""

from __future__ import annotations

import random
from dataclasses import replace

from wattserve.tasks.checkers import alternatives_pattern
from wattserve.tasks.draft import Draft
from wattserve.tasks.tables import Noun, nouns

LEVELS = (1, 2, 3, 4, 5)
SHOTS = 4
OPS = {1: "first", 2: "plural", 3: "last", 4: "reverse", 5: "reverse"}
LETTER_LEVELS = (1, 2)
_LETTER_OPS = {1: 1, 2: 3}  # letters level -> words level


def _fits(level: int, n: Noun) -> bool:
    if level == 4:
        return 3 <= len(n.word) <= 4
    if level == 5:
        return 6 <= len(n.word) <= 8
    return True


def pool(level: int) -> list[Noun]:
    return [n for n in nouns() if _fits(level, n)]


def _pair(level: int, n: Noun) -> tuple[str, str, str]:
    """(input label, output label, answer) for one noun."""
    op = OPS[level]
    if op == "first":
        return "Word", "First letter", n.word[0]
    if op == "last":
        return "Word", "Last letter", n.word[-1]
    if op == "plural":
        return "Singular", "Plural", n.plural
    return "Word", "Reversed", n.word[::-1]


def build(rng: random.Random, level: int, question: Noun) -> Draft:
    others = [n for n in pool(level) if n != question]
    blocks = []
    for s in rng.sample(others, SHOTS):
        a, b, ans = _pair(level, s)
        blocks.append(f"{a}: {s.word}\n{b}: {ans}")
    a, b, ans = _pair(level, question)
    blocks.append(f"{a}: {question.word}\n{b}:")
    alt = level == 2 and bool(question.aliases)
    return Draft(
        key=f"{OPS[level]}{level}:{question.word}",
        difficulty=level,
        prompt="\n\n".join(blocks),
        answer=ans,
        checker="regex" if alt else "exact",
        pattern=alternatives_pattern([ans, *question.aliases]) if alt else None,
        meta={"op": OPS[level], "word": question.word},
    )


def letters_pool(level: int) -> list[Noun]:
    return pool(_LETTER_OPS[level])


def build_letters(rng: random.Random, level: int, question: Noun) -> Draft:
    """A ``words`` first- (1) or last-letter (2) item, with the ``letters`` difficulty."""
    return replace(build(rng, _LETTER_OPS[level], question), difficulty=level)
