"""``BenchSession``: one run directory being written (run.json, summary.csv, catalog entry).

``requests.jsonl`` is appended through ``session.log`` as requests finish; ``save`` rewrites
run.json and summary.csv atomically after every point and registers the run in the catalog,
so a run killed at any moment leaves a readable directory that ``resume_benchmark`` finishes.
The machine's environment is collected in a thread beside engine start-up (it may import
torch: seconds) and lands in run.json with the first save after it finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattserve.bench import metrics, store
from wattserve.bench.config import BenchConfig

if TYPE_CHECKING:
    from wattserve.bench.point import PointResult


def footprint(model: str) -> dict[str, Any] | None:
    """The model's memory footprint (wattserve.footprint); None when its config is unknown."""
    from wattserve.footprint import footprint_for_model

    return footprint_for_model(model)


class BenchSession:
    """One run directory being written: run.json, requests.jsonl, summary.csv, catalog.

    ``run_json`` is the saved run.json of a run being resumed; each session (the first run
    and every resume) appends one entry to its ``segments``. ``collect_env`` returns the
    machine's environment record; it runs in a thread unless run.json already has one.
    """

    def __init__(
        self,
        cfg: BenchConfig,
        run_dir: Path,
        meter_desc: dict[str, Any],
        run_json: dict[str, Any] | None = None,
        collect_env: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.log = store.RequestLog(run_dir / store.REQUESTS)
        self.data: dict[str, Any] = run_json or {
            "schema_version": store.SCHEMA_VERSION,
            "run_id": run_dir.name,
            "config": cfg.model_dump(mode="json"),
            "environment": {},
            "footprint": footprint(cfg.model),
            "meter": meter_desc.get("type"),
            "meter_info": meter_desc,
            "wall_start": time.time(),
            "status": "running",
            "points": [],
            "segments": [],
        }
        self.data.setdefault("segments", []).append(
            {"wall_start": time.time(), "perf_start": time.perf_counter()}
        )
        # collecting the environment imports torch (seconds): do it beside engine start-up and
        # the first requests; every save after it finishes includes it
        self._env: dict[str, Any] = {}
        self._env_thread: threading.Thread | None = None
        if collect_env is not None and not self.data.get("environment"):
            self._env_thread = threading.Thread(
                target=lambda: self._env.update(collect_env()),
                name="collect-environment",
                daemon=True,
            )
            self._env_thread.start()

    @property
    def segment(self) -> int:
        """The index of this run segment (this start or resume) in run.json's ``segments``."""
        return len(self.data["segments"]) - 1

    def save(self, status: str | None = None, wait_env_s: float = 0.0) -> None:
        """Rewrite run.json and summary.csv, upsert the catalog entry; ``wait_env_s`` bounds
        the wait for the environment thread (0: include it only if it has finished)."""
        if status:
            self.data["status"] = status
        if self._env_thread is not None:
            self._env_thread.join(wait_env_s)
            if not self._env_thread.is_alive():
                self.data["environment"] = dict(self._env)
                self._env_thread = None
        store.write_json_atomic(self.run_dir / store.RUN_JSON, self.data)
        rows = [
            store.summary_row(p, metrics.summary_from_dict(p["summary"]))
            for p in self.data["points"]
        ]
        store.write_summary_csv(self.run_dir / store.SUMMARY, rows)
        try:
            store.catalog_upsert(self.cfg.result_dir, self.run_dir, self.data)
        except Exception as exc:  # noqa: BLE001 - a locked or unwritable catalog must not lose the run
            self.data["catalog_error"] = str(exc)

    def set_point(self, result: PointResult) -> None:
        """Put ``result`` in run.json's ``points``, replacing a saved point of its label."""
        pts = [p for p in self.data["points"] if p["label"] != result.label]
        self.data["points"] = pts + [result.to_dict()]

    def saved_point(self, label: str) -> dict[str, Any] | None:
        """The point of ``label`` as run.json holds it, or None."""
        return next((p for p in self.data["points"] if p["label"] == label), None)

    def close(self) -> None:
        self.log.close()
