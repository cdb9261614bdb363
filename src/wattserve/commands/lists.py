"""List-valued options: each flag takes a comma list, repeats, or both (``--policy lec,lfu``,
``--policy lec --policy lfu``), as ``bench --max-concurrency 1,8`` does."""

from __future__ import annotations

from wattserve.errors import ConfigError


def names(values: list[str]) -> list[str]:
    """The items of every repeat of a flag, each split at commas, blanks dropped."""
    return [v.strip() for spec in values for v in spec.split(",") if v.strip()]


def numbers(values: list[str], flag: str) -> list[float]:
    """``names`` as floats; one line naming the flag for a value that is not a number."""
    out = []
    for v in names(values):
        try:
            out.append(float(v))
        except ValueError:
            raise ConfigError(f"{flag} {v!r}: give numbers, e.g. 0.5,0.8") from None
    return out
