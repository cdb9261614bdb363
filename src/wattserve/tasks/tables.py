"""The hand-written tables the task families draw from (package data, nothing fetched).

``data/tasks/countries.csv``: country, capital, accepted alternative names (``|``),
continent and a familiarity tier (1 well known .. 3 obscure).
``data/tasks/words.csv``: an English noun, its plural and accepted alternative plurals.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

CONTINENTS = ("Africa", "Asia", "Europe", "North America", "Oceania", "South America")


@dataclass(frozen=True, slots=True)
class Country:
    name: str  # as used mid-sentence, e.g. "the Netherlands"
    capital: str
    aliases: tuple[str, ...]
    continent: str
    tier: int


@dataclass(frozen=True, slots=True)
class Noun:
    word: str
    plural: str
    aliases: tuple[str, ...]


def _rows(name: str) -> list[dict[str, str]]:
    text = (resources.files("wattserve") / "data" / "tasks" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split("|") if v.strip())


@cache
def countries() -> tuple[Country, ...]:
    out = tuple(
        Country(r["country"], r["capital"], _split(r["aliases"]), r["continent"], int(r["tier"]))
        for r in _rows("countries.csv")
    )
    bad = [c.name for c in out if c.continent not in CONTINENTS or c.tier not in (1, 2, 3)]
    if bad:
        raise ValueError(f"countries.csv: bad continent or tier for {', '.join(bad)}")
    return out


@cache
def nouns() -> tuple[Noun, ...]:
    return tuple(Noun(r["word"], r["plural"], _split(r["aliases"])) for r in _rows("words.csv"))
