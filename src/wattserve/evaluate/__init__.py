"""``wattserve eval``: run models over checkable task items and price each right answer in joules.

    result = run_eval(EvalConfig(tasks_path="tasks.jsonl", models=["smollm2-135m"]))
    result.summary["rows"]  # per model x family: accuracy, J/request, J/correct, 95% CIs

The run directory holds ``eval.json`` (config, engines, summary), ``tasks.jsonl`` (the
items evaluated), ``records.jsonl`` (one line per model and item), ``summary.csv`` and
``routing/`` (the dataset ``wattserve route train --data`` reads).
"""

from wattserve.evaluate.config import EvalConfig
from wattserve.evaluate.runner import EvalResult, resume_eval, run_eval
from wattserve.evaluate.summary import summarize

__all__ = ["EvalConfig", "EvalResult", "resume_eval", "run_eval", "summarize"]
