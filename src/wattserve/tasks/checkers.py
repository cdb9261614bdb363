"""Read the answer from a model's output and check it against a ``TaskItem``.

The answer is the first non-empty line of the output. Text answers are normalised before
comparing: accents dropped (NFKD), case folded, every run of characters other than
letters and digits turned into one space, so ``" Bogota."`` equals ``"Bogotá"`` and
``"Washington, D.C."`` becomes ``"washington d c"``. A text answer is also cut at the
first sentence end (``". "``), so a model that writes ``"Paris. The capital of..."`` on
one line is read as ``"Paris"``.
"""

from __future__ import annotations

import math
import re
import unicodedata

from wattserve.tasks.items import TaskItem

_NON_WORD = re.compile(r"[^0-9a-z]+")
_NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"^\W*\(?([A-Z])\b")
_SENTENCE_END = re.compile(r"[.!?]\s")


def first_line(text: str) -> str:
    """The first line with any non-space character, stripped ('' when there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def normalise(text: str) -> str:
    """Accent-free, case-folded, punctuation-free form with single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", plain.casefold()).strip()


def text_answer(output: str) -> str:
    """The first line cut at its first sentence end, normalised."""
    line = first_line(output)
    m = _SENTENCE_END.search(line)
    return normalise(line[: m.start()] if m else line)


def parse_number(output: str) -> float | None:
    """The first number on the first line (thousands commas allowed), else None."""
    m = _NUMBER.search(first_line(output))
    if m is None:
        return None
    raw = m.group(0).replace(",", "").replace("−", "-")
    try:
        return float(raw)
    except ValueError:
        return None


def choice_letter(output: str, n_choices: int) -> str | None:
    """The option letter the output starts with (``B``, ``(B)``, ``B.``), else None."""
    m = _LETTER.match(first_line(output))
    if m is None:
        return None
    letter = m.group(1).upper()
    return letter if 0 <= ord(letter) - ord("A") < n_choices else None


def extract(item: TaskItem, output: str) -> str:
    """What the checker reads from ``output``, as text (for records and debugging)."""
    if item.checker == "numeric":
        x = parse_number(output)
        return "" if x is None else f"{x:g}"
    if item.checker == "choice":
        letter = choice_letter(output, len(item.choices))
        return letter if letter is not None else text_answer(output)
    return text_answer(output)


def check(item: TaskItem, output: str) -> bool:
    """Whether ``output`` answers ``item`` correctly under its checker kind."""
    if item.checker == "numeric":
        got = parse_number(output)
        try:
            want = float(item.answer)
        except ValueError:
            return False
        return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if item.checker == "choice":
        letter = choice_letter(output, len(item.choices))
        if letter is not None:
            return letter == item.answer.strip().upper()
        k = ord(item.answer.strip().upper()) - ord("A")
        return 0 <= k < len(item.choices) and text_answer(output) == normalise(item.choices[k])
    if item.checker == "regex":
        return re.fullmatch(item.pattern or "", text_answer(output)) is not None
    return text_answer(output) == normalise(item.answer)


def alternatives_pattern(answers: list[str]) -> str:
    """A regex accepting any of ``answers`` (compared in normalised form)."""
    forms = sorted({normalise(a) for a in answers if normalise(a)}, key=lambda s: (-len(s), s))
    return "(?:" + "|".join(re.escape(f) for f in forms) + ")"
