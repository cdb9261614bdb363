"""Read the user's input files (CSV, JSON, JSONL, YAML) with one kind of failure.

Each reader raises ``ConfigError`` naming the file and the reason (a missing or unreadable
file, bytes that are not UTF-8, a parser error) so that the CLI prints one line instead of
a pandas, json or yaml traceback. Callers validate the content they need afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattserve.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (parser messages run over several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _text(path: Path, kind: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a {kind} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read as {kind} ({_reason(exc)})") from None


def read_json(path: str | Path) -> Any:
    """The JSON document in ``path``."""
    p = Path(path)
    text = _text(p, "JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None


def read_jsonl(path: str | Path) -> list[Any]:
    """One JSON value per non-blank line of ``path``; an error names the line."""
    p = Path(path)
    rows = []
    for n, line in enumerate(_text(p, "JSONL").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
    return rows


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (``None`` for an empty file)."""
    import yaml

    p = Path(path)
    text = _text(p, "YAML")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or _reason(exc)
        raise ConfigError(f"{p}: not valid YAML{where} ({problem})") from None


def read_csv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` of ``path``; ``kwargs`` go to pandas."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a CSV file")
    try:
        return pd.read_csv(p, **kwargs)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{p}: empty, expected a CSV file with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{p}: cannot read as CSV ({_reason(exc)})") from None


def read_json_table(path: str | Path, lines: bool) -> pd.DataFrame:
    """JSONL records (``lines=True``), or a JSON list of records or object of columns, as a
    DataFrame."""
    import pandas as pd

    doc = read_jsonl(path) if lines else read_json(path)
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        return pd.DataFrame(doc)
    if isinstance(doc, dict):
        try:
            return pd.DataFrame(doc)
        except ValueError as exc:
            raise ConfigError(f"{path}: not a table of columns ({_reason(exc)})") from None
    kind = "one JSON object per line" if lines else "a JSON list of objects"
    raise ConfigError(f"{path}: expected {kind}")
