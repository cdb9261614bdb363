"""``BenchConfig``: everything one benchmark run needs, validated (pydantic v2).

The CLI builds it from flags (names as in ``vllm bench serve``); the sweep builds it
directly; ``run.json`` stores it so ``--resume`` can rebuild the same run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wattserve.errors import ConfigError

Backend = Literal["auto", "local", "llama-cpp", "openai", "simulated"]
MeterName = Literal["auto", "modeled", "rapl", "nvml", "null"]
METRIC_NAMES = ("ttft", "tpot", "itl", "e2el")
FILE_DATASETS = ("custom", "trace", "sharegpt")
# ``vllm bench serve --backend`` names of OpenAI-compatible clients -> (backend, endpoint)
VLLM_BACKENDS = {"vllm": ("openai", None), "openai-chat": ("openai", "chat")}


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    backend: Backend = "auto"
    base_url: str | None = None
    endpoint: Literal["completions", "chat"] = "completions"
    threads: int = Field(1, ge=1)

    dataset_name: Literal["random", "custom", "trace", "sharegpt"] = "random"
    dataset_path: str | None = None
    input_len: int = Field(64, ge=1)
    output_len: int = Field(32, ge=1)
    # a grid of shapes: every (input, output) pair is its own set of points (random dataset)
    input_lens: list[int] | None = None
    output_lens: list[int] | None = None
    random_range_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    num_prompts: int = Field(100, ge=1)
    ignore_eos: bool = True

    request_rates: list[float] | None = None  # None: as fast as possible (inf)
    max_concurrencies: list[int] | None = None
    burstiness: float = 1.0
    arrival: Literal["poisson", "constant"] = "poisson"
    num_warmups: int = Field(0, ge=0)
    seed: int = 0
    timeout_s: float | None = Field(None, gt=0)

    percentile_metrics: list[str] = Field(default_factory=lambda: list(METRIC_NAMES))
    metric_percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 99.0])
    goodput: dict[str, float] = Field(default_factory=dict)  # ttft/tpot/e2el -> ms

    meter: MeterName = "auto"
    energy_attribution: Literal["active_time", "tokens", "total_tokens"] = "active_time"
    energy_interval_s: float = Field(0.1, gt=0)
    result_dir: str = "runs"
    label: str | None = None
    # the ``vllm bench serve`` result file (see wattserve.bench.vllm_result)
    save_result: bool = False
    save_detailed: bool = False
    result_filename: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _vllm_backend(cls, data: Any) -> Any:
        """``--backend vllm`` / ``openai-chat`` (vLLM's names) -> the OpenAI HTTP client."""
        if isinstance(data, dict) and data.get("backend") in VLLM_BACKENDS:
            backend, endpoint = VLLM_BACKENDS[data["backend"]]
            data = {**data, "backend": backend}
            if endpoint is not None:
                data["endpoint"] = endpoint
        return data

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected http://HOST:PORT[/v1], got {v!r}")
        return v.strip()

    @field_validator("result_filename")
    @classmethod
    def _result_filename(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v.endswith(("/", os.sep))):
            raise ValueError(f"expected a file name, got {v!r}")
        return v

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint(cls, v: object) -> object:
        if isinstance(v, str):  # accept vLLM-style paths
            s = v.strip().rstrip("/")
            if s.endswith("chat/completions") or s == "chat":
                return "chat"
            if s.endswith("completions"):
                return "completions"
        return v

    @field_validator("input_lens", "output_lens")
    @classmethod
    def _lens(cls, v: list[int] | None) -> list[int] | None:
        for n in v or ():
            if n < 1:
                raise ValueError(f"lengths must be >= 1, got {n}")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"lengths repeat: {v}")
        return v

    def shapes(self) -> list[tuple[int, int]]:
        """Every (input_len, output_len) pair of the grid; one pair without a grid."""
        ins = self.input_lens or [self.input_len]
        outs = self.output_lens or [self.output_len]
        return [(i, o) for i in ins for o in outs]

    @field_validator("request_rates")
    @classmethod
    def _rates(cls, v: list[float] | None) -> list[float] | None:
        for r in v or ():
            if math.isnan(r) or r <= 0:
                raise ValueError(f"request rate must be > 0 (or inf), got {r:g}")
        return v

    @field_validator("max_concurrencies")
    @classmethod
    def _concs(cls, v: list[int] | None) -> list[int] | None:
        for c in v or ():
            if c < 1:
                raise ValueError(f"max concurrency must be >= 1, got {c}")
        return v

    @field_validator("burstiness")
    @classmethod
    def _burst(cls, v: float) -> float:
        if not (v > 0) or math.isinf(v):
            raise ValueError(f"burstiness must be a positive number, got {v:g}")
        return v

    @field_validator("percentile_metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METRIC_NAMES]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {','.join(METRIC_NAMES)}")
        return v

    @field_validator("metric_percentiles")
    @classmethod
    def _pcts(cls, v: list[float]) -> list[float]:
        for p in v:
            if not 0 <= p <= 100:
                raise ValueError(f"percentile must be within 0..100, got {p:g}")
        return v

    @field_validator("goodput")
    @classmethod
    def _goodput(cls, v: dict[str, float]) -> dict[str, float]:
        for k, ms in v.items():
            if k not in ("ttft", "tpot", "e2el"):
                raise ValueError(f"goodput SLO {k!r} unknown; use ttft, tpot or e2el")
            if not ms > 0:
                raise ValueError(f"goodput SLO {k} must be > 0 ms, got {ms:g}")
        return v

    @model_validator(mode="after")
    def _dataset(self) -> BenchConfig:
        if self.dataset_name in FILE_DATASETS and not self.dataset_path:
            raise ValueError(f"--dataset-name {self.dataset_name} needs --dataset-path FILE")
        if self.dataset_name == "random" and self.dataset_path:
            raise ValueError(
                "--dataset-name random takes no --dataset-path "
                "(name the file's format: custom, trace or sharegpt)"
            )
        if (self.input_lens or self.output_lens) and self.dataset_name != "random":
            raise ValueError("length lists (a grid) need --dataset-name random")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return self

    @classmethod
    def build(cls, **kwargs: object) -> BenchConfig:
        """Validate, turning pydantic's errors into one readable ``ConfigError``."""
        try:
            return cls.model_validate(kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None


def check_inputs(cfg: BenchConfig) -> None:
    """What the config alone cannot tell: the dataset file is readable, the result directory
    can be written. Runs before any engine starts, so a typo fails in milliseconds; creates
    nothing."""
    if cfg.dataset_name in FILE_DATASETS and cfg.dataset_path:
        p = Path(cfg.dataset_path).expanduser()
        if not p.exists():
            raise ConfigError(f"--dataset-path {p}: no such file")
        if not p.is_file():
            raise ConfigError(f"--dataset-path {p}: not a file")
        if not os.access(p, os.R_OK):
            raise ConfigError(f"--dataset-path {p}: not readable")
    root = Path(cfg.result_dir).expanduser()
    _check_writable_dir(root, "--result-dir")
    if cfg.save_result and cfg.result_filename:
        target = root / Path(cfg.result_filename).expanduser()
        if target.is_dir():
            raise ConfigError(f"--result-filename {target}: is a directory")
        _check_writable_dir(target.parent, "--result-filename")


def _check_writable_dir(path: Path, flag: str) -> None:
    """``path`` is a writable directory, or can be created: its nearest existing ancestor is."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {probe} is not writable")


# fields whose flag is not the field's name with dashes
FIELD_FLAGS = {
    "request_rates": "--request-rate",
    "max_concurrencies": "--max-concurrency",
    "timeout_s": "--timeout",
    "input_lens": "--input-len",
    "output_lens": "--output-len",
}


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        msg = e["msg"].removeprefix("Value error, ")
        flag = FIELD_FLAGS.get(field, f"--{field.replace('_', '-')}")
        parts.append(f"{flag}: {msg}" if field else msg)
    return "invalid benchmark options: " + "; ".join(parts)


def parse_list(text: str | None, kind: type, flag: str) -> list[Any] | None:
    """'1,8' -> [1, 8]; 'inf' allowed for floats; '' / None -> None."""
    if text is None or str(text).strip() == "":
        return None
    out: list[Any] = []
    for part in str(text).replace(" ", ",").split(","):
        if not part:
            continue
        try:
            out.append(
                kind(float(part)) if kind is int and float(part).is_integer() else kind(part)
            )
        except ValueError:
            raise ConfigError(f"{flag}: {part!r} is not a valid {kind.__name__}") from None
    return out


def parse_goodput(items: list[str] | None) -> dict[str, float]:
    """['ttft:200', 'tpot:50 e2el:2000'] -> {'ttft': 200.0, 'tpot': 50.0, 'e2el': 2000.0} (ms)."""
    out: dict[str, float] = {}
    for item in items or ():
        for tok in item.replace(",", " ").split():
            name, sep, val = tok.partition(":")
            try:
                if not sep:
                    raise ValueError
                out[name.strip().lower()] = float(val)
            except ValueError:
                raise ConfigError(
                    f"--goodput: expected NAME:MS (e.g. ttft:200), got {tok!r}"
                ) from None
    return out
