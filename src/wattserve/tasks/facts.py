"""Country facts from the shipped table, as completions (``facts``) or choices (``facts-mc``).

Difficulty is the country's familiarity tier (1 well known .. 3 obscure). Solved examples
always come from tier-1 countries, so a hard item is hard for its question alone.

``facts`` asks a capital or a continent as a sentence to complete::

    The capital of France is Paris.
    ...
    The capital of Kenya is

``facts-mc`` asks the same facts with four lettered options and reads the letter::

    Question: What is the capital of Peru?
    A. Quito
    B. Lima
    ...
    Answer: B

``facts-options`` lists the same four options unlettered and reads the option's text, so
a base model only has to copy the right name (the letter indirection is where small
models fall to chance)::

    Question: What is the capital of Peru?
    Options: Quito, Lima, Bogota, Caracas
    Answer: Lima

``facts-hard`` is ``facts`` at tiers 2-3 only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from wattserve.tasks.checkers import alternatives_pattern
from wattserve.tasks.draft import Draft
from wattserve.tasks.tables import CONTINENTS, Country, countries

LEVELS = (1, 2, 3)
HARD_LEVELS = (2, 3)  # ``facts-hard``: the same sentences, less familiar countries only
RELATIONS = ("capital", "continent")
SHOTS = 4
MC_SHOTS = 3
LETTERS = "ABCD"


def pool(level: int) -> list[tuple[str, Country]]:
    """Every (relation, country) question at a tier, in table order."""
    return [(rel, c) for c in countries() if c.tier == level for rel in RELATIONS]


def _shot_countries(rng: random.Random, exclude: Country, k: int) -> list[Country]:
    known = [c for c in countries() if c.tier == 1 and c != exclude]
    return rng.sample(known, k)


def _sentence(relation: str, c: Country, answer: bool) -> str:
    if relation == "capital":
        return f"The capital of {c.name} is" + (f" {c.capital}." if answer else "")
    name = c.name[0].upper() + c.name[1:]
    return f"{name} is a country in" + (f" {c.continent}." if answer else "")


def _answer_fields(relation: str, c: Country) -> dict[str, Any]:
    if relation == "capital" and c.aliases:
        return {
            "answer": c.capital,
            "checker": "regex",
            "pattern": alternatives_pattern([c.capital, *c.aliases]),
        }
    return {"answer": c.capital if relation == "capital" else c.continent, "checker": "exact"}


def build(rng: random.Random, level: int, question: tuple[str, Country]) -> Draft:
    relation, c = question
    shots = [_sentence(relation, s, True) for s in _shot_countries(rng, c, SHOTS)]
    return Draft(
        key=f"{relation}:{c.name}",
        difficulty=level,
        prompt="\n".join([*shots, _sentence(relation, c, False)]),
        meta={"relation": relation, "country": c.name},
        **_answer_fields(relation, c),
    )


def _options(rng: random.Random, relation: str, c: Country) -> tuple[list[str], int]:
    """Four option texts with the right one at a random position, and that position."""
    if relation == "continent":
        wrong = rng.sample([x for x in CONTINENTS if x != c.continent], 3)
        right = c.continent
    else:
        taken = {c.capital, *c.aliases}
        near = [x.capital for x in countries() if x.continent == c.continent and x != c]
        near = [x for x in near if x not in taken]
        far = [x.capital for x in countries() if x.capital not in taken and x.capital not in near]
        wrong = rng.sample(near, 3) if len(near) >= 3 else near + rng.sample(far, 3 - len(near))
        right = c.capital
    pos = rng.randrange(4)
    opts = list(wrong)
    opts.insert(pos, right)
    return opts, pos


def _question(relation: str, c: Country) -> str:
    if relation == "capital":
        return f"Question: What is the capital of {c.name}?"
    return f"Question: On which continent is {c.name}?"


def _answer_line(answer: str | None) -> str:
    return "Answer:" + (f" {answer}" if answer else "")


def _mc_block(relation: str, c: Country, opts: list[str], pos: int | None) -> str:
    """Lettered options; a shot's answer is its letter."""
    lines = [_question(relation, c), *(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))]
    lines.append(_answer_line(None if pos is None else LETTERS[pos]))
    return "\n".join(lines)


def _options_block(relation: str, c: Country, opts: list[str], pos: int | None) -> str:
    """Unlettered options; a shot's answer is the right option's text."""
    answer = None if pos is None else opts[pos]
    return "\n".join([_question(relation, c), "Options: " + ", ".join(opts), _answer_line(answer)])


def _choice_draft(
    rng: random.Random,
    level: int,
    question: tuple[str, Country],
    block: Callable[[str, Country, list[str], int | None], str],
) -> Draft:
    """Few-shot multiple choice: shots with their answers, then the question; checked by choice."""
    relation, c = question
    blocks = []
    for s in _shot_countries(rng, c, MC_SHOTS):
        opts, pos = _options(rng, relation, s)
        blocks.append(block(relation, s, opts, pos))
    opts, pos = _options(rng, relation, c)
    blocks.append(block(relation, c, opts, None))
    return Draft(
        key=f"{relation}:{c.name}",
        difficulty=level,
        prompt="\n\n".join(blocks),
        answer=LETTERS[pos],
        checker="choice",
        choices=tuple(opts),
        meta={"relation": relation, "country": c.name},
    )


def build_mc(rng: random.Random, level: int, question: tuple[str, Country]) -> Draft:
    return _choice_draft(rng, level, question, _mc_block)


def build_options(rng: random.Random, level: int, question: tuple[str, Country]) -> Draft:
    """Four unlettered options; the answer is the right option's text (choice check)."""
    return _choice_draft(rng, level, question, _options_block)
