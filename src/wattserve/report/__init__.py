"""One self-contained HTML report (figures embedded, opens offline) of a run or sweep directory.

Public API (names load lazily; matplotlib is imported only when figures are drawn)::

    from wattserve.report import write_report
    path = write_report("runs/sweep")                  # -> runs/sweep/report.html

``load(path)`` gives the ``ReportData`` behind it and ``render(data)`` the HTML text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.report.data import ReportData, load, load_run, load_sweep
    from wattserve.report.html import render, write_report

__all__ = ["ReportData", "load", "load_run", "load_sweep", "render", "write_report"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.report.data": ("ReportData", "load", "load_run", "load_sweep"),
        "wattserve.report.html": ("render", "write_report"),
    },
)
