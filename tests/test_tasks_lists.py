"""The long-answer families (sequence, repeat-list) and the answer budget items carry."""

from __future__ import annotations

import json

import pytest

from wattserve.errors import ConfigError
from wattserve.evaluate.config import EvalConfig
from wattserve.evaluate.runner import DEFAULT_MAX_TOKENS, request_for
from wattserve.tasks import FAMILIES, TaskItem, check, make_tasks, read_tasks, write_tasks
from wattserve.tasks.lists import LIST_LENGTHS, MAX_TOKENS, NEXT, SHOTS, SHOWN


def _numbers(line: str) -> list[int]:
    return [int(x) for x in line.split(":", 1)[1].split(",")]


def test_sequence_items_continue_their_progression_by_level():
    for it in make_tasks("sequence", 60, seed=5):
        blocks = it.prompt.split("\n\n")
        assert len(blocks) == SHOTS + 1
        shown = _numbers(blocks[-1].splitlines()[0])
        answer = [int(x) for x in it.answer.split(", ")]
        terms = shown + answer
        assert len(shown) == SHOWN and len(answer) == NEXT
        step = terms[1] - terms[0]
        assert all(b - a == step for a, b in zip(terms, terms[1:], strict=False))
        assert {1: step == 1, 2: step in (2, 5, 10), 3: 3 <= step <= 9}[it.difficulty]
        for block in blocks[:-1]:  # the solved examples are right too
            head, tail = block.splitlines()
            ex = _numbers(head) + _numbers(tail)
            assert len({b - a for a, b in zip(ex, ex[1:], strict=False)}) == 1


def test_repeat_list_answer_is_the_list_with_the_level_length():
    for it in make_tasks("repeat-list", 30, seed=2):
        listed = it.prompt.split("\n\n")[-1].splitlines()[0].removeprefix("List: ")
        assert it.answer == listed
        words = it.answer.split(", ")
        assert len(words) == len(set(words)) == LIST_LENGTHS[it.difficulty]


@pytest.mark.parametrize("family", ["sequence", "repeat-list"])
def test_long_answers_are_checked_term_by_term(family):
    it = make_tasks(family, 3, seed=0)[2]
    terms = it.answer.split(", ")
    assert check(it, f" {it.answer}\n")
    assert check(it, " " + " ".join(terms))  # separators are normalised away
    assert not check(it, " " + ", ".join(terms[:-1]))  # one term short
    assert not check(it, " " + ", ".join([*terms, terms[-1]]))  # one too many
    assert not check(it, " " + ", ".join([terms[1], terms[0], *terms[2:]]))  # out of order


def test_items_carry_their_family_budget_and_requests_use_it(tmp_path):
    short = make_tasks("facts", 2, seed=0)[0]
    long = make_tasks("sequence", 2, seed=0)[0]
    assert short.max_tokens == FAMILIES["facts"].max_tokens == DEFAULT_MAX_TOKENS
    assert long.max_tokens == MAX_TOKENS > 3 * DEFAULT_MAX_TOKENS
    path = tmp_path / "t.jsonl"
    write_tasks(path, [short, long])
    assert [it.max_tokens for it in read_tasks(path)] == [short.max_tokens, MAX_TOKENS]
    cfg = EvalConfig(tasks_path=str(path), models=["m"])
    assert request_for(long, "m", cfg).max_tokens == MAX_TOKENS
    bare = TaskItem("x", "f", 1, "p", "a", "exact")
    assert request_for(bare, "m", cfg).max_tokens == DEFAULT_MAX_TOKENS
    forced = cfg.model_copy(update={"max_tokens": 5})  # --max-tokens overrides every item
    assert request_for(long, "m", forced).max_tokens == 5


@pytest.mark.parametrize("bad", [0, -3, "12", True, 1.5])
def test_a_bad_budget_is_a_one_line_error(tmp_path, bad):
    d = make_tasks("sequence", 1, seed=0)[0].to_dict()
    d["max_tokens"] = bad
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(d) + "\n")
    with pytest.raises(ConfigError, match="max_tokens"):
        read_tasks(path)
