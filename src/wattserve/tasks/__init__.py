"""Checkable tasks generated here: few-shot completion prompts with reference answers.

    items = make_tasks("arithmetic", n=300, seed=0)
    check(items[0], " 65\\n")  # -> True when 65 is the answer

Families (``FAMILIES``): ``arithmetic``, ``facts``, ``facts-hard``, ``facts-mc``,
``facts-options``, ``words``, ``letters`` (answers of 1-8 tokens) and ``sequence``,
``spell`` (answers of about 10-30 tokens); each has graded difficulty levels and
an answer budget (``TaskItem.max_tokens``). Everything
comes from code and the tables in ``wattserve/data/tasks``.
"""

from wattserve.tasks.checkers import check, extract, first_line, normalise
from wattserve.tasks.families import FAMILIES, Family, make_tasks
from wattserve.tasks.io import read_tasks, write_tasks
from wattserve.tasks.items import CHECKERS, TaskItem

__all__ = [
    "CHECKERS",
    "FAMILIES",
    "Family",
    "TaskItem",
    "check",
    "extract",
    "first_line",
    "make_tasks",
    "normalise",
    "read_tasks",
    "write_tasks",
]
