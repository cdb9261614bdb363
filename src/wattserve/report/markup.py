"""HTML pieces of the report: escaping, number formats, tables and embedded figures."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def fmt(v: Any, spec: str | None) -> str:
    if v is None or v == "":
        return "-"
    if spec:
        try:
            return format(float(v), spec)
        except (TypeError, ValueError):
            pass
    return esc(v)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    classes: Sequence[str] | None = None,
    sortable: bool = True,
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for k, r in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    return (
        f'<div class="scroll"><table class="{"sortable" if sortable else ""}">'
        f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def kv_table(d: Mapping[str, Any], skip: Sequence[str] = ()) -> str:
    rows = []
    for k, v in d.items():
        if k in skip or v is None or v == [] or v == {}:
            continue
        text = json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
        rows.append(f"<tr><td>{esc(k)}</td><td>{esc(text)}</td></tr>")
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def img(png: bytes | None, alt: str) -> str:
    if not png:
        return f'<p class="note">{esc(alt)}: no data to plot.</p>'
    data = base64.b64encode(png).decode()
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'
