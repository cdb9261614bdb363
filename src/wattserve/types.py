"""The shared vocabulary of wattserve: immutable data handed from stage to stage.

Every stage takes and returns these frozen, slotted dataclasses. This module imports
nothing from the package. Units are in the field names (``_s`` seconds, ``_j`` joules,
``_w`` watts); raw timestamps are stored and metrics derived from them.

Timestamps (``*_t`` / ``t_s`` / ``sent_s`` ...) are ``time.perf_counter()`` readings of the
process that took them unless a field says otherwise; records on disk also store
``wall_start`` (Unix time) so a run can be placed in time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Literal

SCHEMA_VERSION = 1

Endpoint = Literal["chat", "completions"]
TokenSource = Literal["usage", "engine", "retokenized", "estimated"]
EnergySource = Literal["nvml", "rapl", "modeled", "replay", "null"]


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request, as the benchmark, the gateway and the simulator see it.

    Either ``messages`` (chat) or ``prompt`` (plain completion) is set; ``endpoint`` says
    which API shape to use against OpenAI-compatible servers.
    """

    id: str
    model: str = ""
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    endpoint: Endpoint = "chat"
    stream: bool = True
    input_tokens: int | None = None  # known or expected prompt length (workloads, planner)
    arrival_s: float = 0.0  # scheduled send offset from the start of the run
    deadline_s: float | None = None
    tenant: str = "default"
    extra: Mapping[str, Any] = field(default_factory=dict)  # other output-changing params

    def text(self) -> str:
        """The request's prompt text (chat messages joined), for scorers and caches."""
        if self.messages:
            return "\n".join(m.content for m in self.messages)
        return self.prompt or ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    source: TokenSource = "usage"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of streamed output, stamped on arrival (``t_s``, perf_counter).

    ``tokens`` is how many tokens the chunk carries when the engine knows (0 if not).
    The last chunk of a stream may carry ``usage`` and ``finish_reason`` and empty text.
    """

    text: str
    t_s: float
    tokens: int = 0
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """The outcome of one request: raw timestamps plus token counts.

    ``chunk_t`` holds the arrival time of every chunk that carried content, so TTFT, TPOT
    and ITL are all derived (see ``wattserve.bench.metrics``), never stored pre-computed.
    """

    request_id: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    sent_s: float
    first_token_s: float | None
    end_s: float
    chunk_t: tuple[float, ...] = ()
    token_source: TokenSource = "usage"
    finish_reason: str | None = None
    error: str | None = None
    replica: str | None = None
    cache_hit: bool = False
    energy_j: float | None = None
    energy_source: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.sent_s

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.sent_s

    @property
    def tpot_s(self) -> float | None:
        """(e2e - ttft) / (output_tokens - 1); undefined for fewer than two tokens."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def itl_s(self) -> tuple[float, ...]:
        t = self.chunk_t
        return tuple(b - a for a, b in pairwise(t))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Completion:
        d = dict(d)
        d["chunk_t"] = tuple(d.get("chunk_t") or ())
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True, slots=True)
class EnergyReading:
    """A snapshot of cumulative energy counters: joules per device since an arbitrary origin."""

    t_s: float
    joules: Mapping[str, float]
    sources: Mapping[str, EnergySource]


@dataclass(frozen=True, slots=True)
class Measurement:
    """Energy over one named window: the difference of two ``EnergyReading`` snapshots."""

    window: str
    start_s: float
    end_s: float
    energy_j: Mapping[str, float]  # per device, e.g. {"gpu0": 812.3, "cpu-package-0": 95.1}
    sources: Mapping[str, EnergySource]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def total_j(self) -> float:
        return float(sum(self.energy_j.values()))

    @property
    def avg_power_w(self) -> float:
        return self.total_j / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(duration_s=self.duration_s, total_j=self.total_j, avg_power_w=self.avg_power_w)
        return d


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Aggregates of one benchmark run (one sweep point). See docs/conventions.md."""

    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    input_tokens: int
    output_tokens: int
    # metric name ("ttft_s", "tpot_s", "itl_s", "e2e_s") -> {"mean": .., "p50": .., ...}
    latency: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    goodput_rps: float | None = None
    slo_attainment: float | None = None
    truncated: int = 0  # of ``failed``: streams cut short (no finish reason, no [DONE], short)
    # energy figures, each labelled with its source; per-token figures from steady state
    energy_j: float | None = None
    energy_per_output_token_j: float | None = None
    energy_per_request_j: float | None = None
    avg_power_w: float | None = None
    energy_source: str | None = None
    energy_window: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What ``run.json`` holds: self-describing, versioned."""

    run_id: str
    config: Mapping[str, Any]
    environment: Mapping[str, Any]
    summary: RunSummary | None = None
    measurements: tuple[Measurement, ...] = ()
    schema_version: int = SCHEMA_VERSION
    wall_start: float = 0.0
    status: Literal["running", "complete", "interrupted", "failed"] = "running"


@dataclass(frozen=True, slots=True)
class ModelFit:
    """A fitted cost model for one (model, device, quantity) in (input, output) tokens.

    Evaluate with ``wattserve.fit.predict(fit, input_tokens, output_tokens)``.
    """

    model: str
    device: str
    quantity: Literal["energy_j", "runtime_s"]
    form: str
    params: tuple[str, ...]
    coefficients: tuple[float, ...]
    units: str = ""
    loss: str = "squared"
    cv_r2: float | None = None
    cv_mape: float | None = None
    r2: float | None = None
    r2_uncentered: float | None = None
    n_rows: int = 0
    input_range: tuple[int, int] = (0, 0)
    output_range: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFit:
        d = dict(d)
        for k in ("params", "coefficients", "input_range", "output_range"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True, slots=True)
class Schedule:
    """An offline plan: which target (model@device) answers each query, and its predicted cost."""

    assignment: Mapping[str, str]  # query id -> target name
    energy_j: float
    makespan_s: float
    mean_quality: float
    target_load_s: Mapping[str, float]  # target -> busy seconds
    solver: str
    objective: str
    optimality_gap: float | None = None
    solve_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A multiplexer's choice for one request, with its reason and the scores behind it."""

    model: str
    reason: str
    scores: Mapping[str, float] = field(default_factory=dict)  # predicted quality per model
    costs: Mapping[str, float] = field(default_factory=dict)  # predicted cost per model


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    value: Any
    cost: float
    size: int
    frequency: int = 1
    last_access: float = 0.0
    inserted: float = 0.0
