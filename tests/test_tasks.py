"""Task generation (seeded, deterministic, graded) and the answer checkers."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from wattserve.errors import ConfigError
from wattserve.tasks import (
    FAMILIES,
    TaskItem,
    check,
    extract,
    first_line,
    make_tasks,
    normalise,
    read_tasks,
    write_tasks,
)
from wattserve.tasks.tables import CONTINENTS, countries, nouns


def _item(checker: str, answer: str, **kw) -> TaskItem:
    return TaskItem("t-0", "test", 1, "prompt", answer, checker, **kw)  # type: ignore[arg-type]


# --- generation --------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_same_items_other_seed_other_items(family):
    a = [it.to_dict() for it in make_tasks(family, 40, seed=3)]
    b = [it.to_dict() for it in make_tasks(family, 40, seed=3)]
    c = [it.to_dict() for it in make_tasks(family, 40, seed=4)]
    assert a == b
    assert [x["prompt"] for x in a] != [x["prompt"] for x in c]
    assert len({x["id"] for x in a}) == 40


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_reference_passes_its_own_checker_and_levels_are_spread(family):
    items = make_tasks(family, 120, seed=0)
    for it in items:
        assert check(it, it.answer), it
        assert check(it, f" {it.answer}\nmore text"), it  # answer on the first line
        assert not check(it, "\n"), it
    levels = [it.difficulty for it in items]
    fam = FAMILIES[family]
    assert set(levels) == set(fam.levels)
    counts = [levels.count(lv) for lv in fam.levels]
    assert max(counts) - min(counts) <= 1  # round robin over levels


def test_no_question_repeats_until_the_pool_is_used_up():
    pool = sum(len(FAMILIES["facts"].pool(lv)) for lv in (1, 2, 3))  # type: ignore[misc]
    items = make_tasks("facts", pool + 5, seed=0)
    first = items[:pool]
    keys = [(it.meta["relation"], it.meta["country"]) for it in first]
    assert len(set(keys)) == pool
    assert not any(it.meta.get("repeat") for it in first)
    assert all(it.meta.get("repeat") == 1 for it in items[pool:])


def test_arithmetic_examples_are_right_and_digits_grow():
    for it in make_tasks("arithmetic", 40, seed=1):
        *shots, question = it.prompt.split("\n")
        for line in shots:
            lhs, rhs = line.split(" = ")
            a, op, b = lhs.split()
            assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(rhs)
        a, op, b = question.removesuffix(" =").split()
        assert len(a) == it.difficulty and len(b) == it.difficulty
        assert int(it.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


def test_facts_use_the_table_and_well_known_examples():
    by_name = {c.name: c for c in countries()}
    for it in make_tasks("facts", 60, seed=2):
        c = by_name[it.meta["country"]]
        assert it.difficulty == c.tier
        want = c.capital if it.meta["relation"] == "capital" else c.continent
        assert it.answer == want
        shots = it.prompt.split("\n")[:-1]
        assert len(shots) == 4 and all(s.endswith(".") for s in shots)
        assert c.name not in " ".join(shots)


def test_multiple_choice_has_four_distinct_options_with_the_answer():
    by_name = {c.name: c for c in countries()}
    for it in make_tasks("facts-mc", 60, seed=5):
        c = by_name[it.meta["country"]]
        assert len(it.choices) == 4 and len(set(it.choices)) == 4
        right = it.choices["ABCD".index(it.answer)]
        assert right == (c.capital if it.meta["relation"] == "capital" else c.continent)
        assert it.prompt.endswith("Answer:")
        assert it.prompt.count("Answer:") == 4  # three solved examples + the question


def test_words_operations_by_level():
    for it in make_tasks("words", 50, seed=0):
        word = it.meta["word"]
        last = it.prompt.rsplit("\n", 1)[-1]
        if it.difficulty == 1:
            assert it.answer == word[0] and last == "First letter:"
        elif it.difficulty == 3:
            assert it.answer == word[-1]
        elif it.difficulty in (4, 5):
            assert it.answer == word[::-1]
            assert (3 <= len(word) <= 4) if it.difficulty == 4 else (6 <= len(word) <= 8)


def test_facts_hard_asks_only_less_familiar_countries_as_sentences():
    by_name = {c.name: c for c in countries()}
    items = make_tasks("facts-hard", 300, seed=0)
    assert {it.difficulty for it in items} == {2, 3}
    for it in items:
        c = by_name[it.meta["country"]]
        assert c.tier == it.difficulty in (2, 3)
        *shots, question = it.prompt.split("\n")
        assert question.endswith((" is", " in")) and c.name.casefold() in question.casefold()
        assert all(by_name_tier(by_name, s) == 1 for s in shots)  # examples stay well known
    first = items[: sum(len(facts_pool(lv)) for lv in (2, 3))]
    assert len({(it.meta["relation"], it.meta["country"]) for it in first}) == len(first)


def by_name_tier(by_name, sentence: str) -> int:
    """The tier of the country a solved facts sentence is about."""
    if sentence.startswith("The capital of "):
        name = sentence.removeprefix("The capital of ").rsplit(" is ", 1)[0]
    else:
        name = sentence.split(" is a country in ")[0]
    return next(c.tier for n, c in by_name.items() if n.casefold() == name.casefold())


def facts_pool(level: int) -> list:
    return FAMILIES["facts-hard"].pool(level)  # type: ignore[misc]


def test_facts_options_are_answered_with_the_option_text():
    by_name = {c.name: c for c in countries()}
    for it in make_tasks("facts-options", 60, seed=1):
        c = by_name[it.meta["country"]]
        right = it.choices["ABCD".index(it.answer)]
        assert right == (c.capital if it.meta["relation"] == "capital" else c.continent)
        blocks = it.prompt.split("\n\n")
        assert len(blocks) == 4 and blocks[-1].endswith("\nAnswer:")
        assert blocks[-1].split("\n")[1] == "Options: " + ", ".join(it.choices)
        for shot in blocks[:-1]:  # solved examples answer with one of their options' text
            opts = shot.split("\n")[1].removeprefix("Options: ").split(", ")
            assert shot.rsplit("Answer: ", 1)[1] in opts
        assert "A." not in it.prompt and check(it, f" {right}\n")
        wrong = next(o for o in it.choices if o != right)
        assert not check(it, f" {wrong}\n")


def test_letters_are_first_and_last_letters():
    items = make_tasks("letters", 40, seed=0)
    assert [it.difficulty for it in items[:4]] == [1, 2, 1, 2]
    for it in items:
        word = it.meta["word"]
        last = it.prompt.rsplit("\n", 1)[-1]
        if it.difficulty == 1:
            assert it.answer == word[0] and last == "First letter:"
        else:
            assert it.answer == word[-1] and last == "Last letter:"
        assert it.prompt.count("\n\n") == 4  # four solved examples


def test_tables_are_well_formed():
    cs = countries()
    assert len(cs) >= 150 and {c.continent for c in cs} == set(CONTINENTS)
    assert len({c.name for c in cs}) == len(cs)
    assert len(nouns()) >= 200 and len({n.word for n in nouns()}) == len(nouns())


def test_bad_generation_requests():
    with pytest.raises(ConfigError, match="unknown task family"):
        make_tasks("poetry", 3)
    with pytest.raises(ConfigError, match="levels"):
        make_tasks("facts", 3, levels=[7])
    with pytest.raises(ConfigError, match="at least 1"):
        make_tasks("words", 0)


# --- checkers ----------------------------------------------------------------------------
def test_first_line_and_normalise():
    assert first_line("\n\n  Paris.\nBerlin") == "Paris."
    assert first_line("   \n") == ""
    assert normalise(" Bogotá!") == "bogota"
    assert normalise("Washington, D.C.") == "washington d c"
    assert normalise("Chișinău") == "chisinau"


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        (" 79", True),
        ("79.", True),
        (" 79\n80", True),
        ("= 79", True),
        ("1,079", False),
        (" 78", False),
        ("seventy-nine", False),
        ("", False),
        ("\n79", True),
    ],
)
def test_numeric(output, ok):
    assert check(_item("numeric", "79"), output) is ok


def test_numeric_thousands_and_negative():
    assert check(_item("numeric", "12117"), " 12,117")
    assert check(_item("numeric", "-5"), " -5")
    assert not check(_item("numeric", "5"), " -5")
    assert extract(_item("numeric", "5"), "x 5.0 y") == "5"


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        (" Nairobi.", True),
        ("nairobi", True),
        (" NAIROBI", True),
        (" Nairobi. The capital of Peru is Lima.", True),
        (" Nairobi, Kenya", False),
        (" Mombasa.", False),
        ("", False),
    ],
)
def test_exact(output, ok):
    assert check(_item("exact", "Nairobi"), output) is ok


def test_exact_ignores_accents():
    assert check(_item("exact", "Bogotá"), " Bogota.")
    assert check(_item("exact", "Reykjavík"), " reykjavik")


def test_regex_alternatives():
    from wattserve.tasks.checkers import alternatives_pattern

    it = _item("regex", "Washington", pattern=alternatives_pattern(["Washington", "Washington DC"]))
    assert check(it, " Washington.")
    assert check(it, " Washington DC")
    assert not check(it, " Washington State")
    assert re.fullmatch(it.pattern or "", "washington dc")


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        (" B", True),
        ("B.", True),
        (" (B)", True),
        (" B. Lima", True),
        (" Lima", True),
        (" A", False),
        (" Quito", False),
        (" E", False),
        ("", False),
        ("b", False),
    ],
)
def test_choice(output, ok):
    it = _item("choice", "B", choices=("Quito", "Lima", "Bogotá", "Santiago"))
    assert check(it, output) is ok


# --- files and CLI -----------------------------------------------------------------------
def test_write_read_round_trip(tmp_path):
    items = make_tasks("facts-mc", 5, seed=0) + make_tasks("words", 5, seed=0)
    path = tmp_path / "t.jsonl"
    assert write_tasks(path, items) == 10
    assert read_tasks(path) == items


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ("not json", "not JSON"),
        ('{"id": "x"}', "missing field"),
        (
            '{"id":"x","family":"f","difficulty":1,"prompt":"p","answer":"a","checker":"fuzzy"}',
            "unknown checker",
        ),
        (
            '{"id":"x","family":"f","difficulty":"hard","prompt":"p","answer":"a","checker":"exact"}',
            "difficulty",
        ),
        (
            '{"id":"x","family":"f","difficulty":1,"prompt":"p","answer":"a","checker":"regex"}',
            "pattern",
        ),
    ],
)
def test_read_rejects_bad_lines(tmp_path, line, msg):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=msg):
        read_tasks(path)


def test_read_rejects_duplicate_ids(tmp_path):
    item = make_tasks("words", 1)[0].to_dict()
    path = tmp_path / "dup.jsonl"
    path.write_text((json.dumps(item) + "\n") * 2)
    with pytest.raises(ConfigError, match="duplicate"):
        read_tasks(path)


@pytest.fixture
def cli(capsys):
    from wattserve.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def test_cli_make_and_errors(cli, tmp_path):
    out = tmp_path / "tasks.jsonl"
    r = cli(
        "tasks", "make", "--family", "arithmetic,words", "--n", "7", "--seed", "2", "-o", str(out)
    )
    assert r.returncode == 0, r.stderr
    items = read_tasks(out)
    assert [it.family for it in items] == ["arithmetic"] * 7 + ["words"] * 7
    assert items == make_tasks("arithmetic", 7, 2) + make_tasks("words", 7, 2)
    r = cli("tasks", "make", "--family", "all", "--n", "2", "--difficulty", "1", "-o", str(out))
    assert r.returncode == 0 and {it.difficulty for it in read_tasks(out)} == {1}
    fams = {it.family for it in read_tasks(out)}
    assert "facts" in fams and "letters" in fams and "facts-hard" not in fams  # has no level 1
    r = cli("tasks", "make", "--family", "all", "--difficulty", "9", "-o", str(out))
    assert r.returncode != 0 and "no task family" in r.stderr and "Traceback" not in r.stderr
    r = cli("tasks", "make", "--family", "poetry", "-o", str(out))
    assert r.returncode != 0 and "unknown task family" in r.stderr and "Traceback" not in r.stderr
    r = cli("tasks", "make", "--family", "words", "--difficulty", "x", "-o", str(out))
    assert r.returncode != 0 and "--difficulty" in r.stderr
    r = cli("tasks", "families", "--json")
    assert r.returncode == 0 and {f["family"] for f in json.loads(r.stdout)} == set(FAMILIES)
