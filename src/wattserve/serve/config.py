"""The gateway's configuration: one YAML/TOML file describes models, replicas, devices,
cache, router, balancer, health checks, timeouts, auth and limits (pydantic v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattserve.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplicaConfig(_Strict):
    """One or more replicas of a model.

    ``kind``: ``url`` (an OpenAI-compatible server already running), ``local`` (an in-process
    engine from ``wattserve.engines.factory.create_engine``), ``command`` (a server process
    the launcher starts, e.g. ``vllm serve`` / ``llama-server``; ``{model}``, ``{port}``,
    ``{memory_fraction}`` and ``{device}`` are filled in), ``mock`` (the zero-delay mock
    OpenAI server, for demos and benchmarks).
    """

    kind: Literal["url", "local", "command", "mock"] = "url"
    url: str | None = None  # base URL ending in /v1, for kind=url
    copies: int = Field(1, ge=1, le=64)
    device: str = "cpu"  # energy-meter device this replica draws from; replicas may share one
    # local: charged by this host's meter for ``device``; unmetered (a remote GPU behind a
    # URL): charged the fitted joules of its model on ``device`` (a fit's device name), never
    # this host's meter. None: unmetered when ``device`` is a URL or "unmetered", else local
    meter: Literal["local", "unmetered"] | None = None
    engine_model: str | None = None  # model name sent to the engine; default: the model's name
    backend: str = "auto"  # local engines
    threads: int = Field(1, ge=1)
    command: list[str] | None = None
    port: int | None = (
        None  # first port for kind=command (copies take consecutive ports); None = free ports
    )
    memory_fraction: float | None = Field(None, gt=0, le=1)
    env: dict[str, str] = Field(default_factory=dict)
    ready_path: str = "/v1/models"
    ready_timeout_s: float = Field(600.0, gt=0)
    slots: int = Field(8, ge=1)  # concurrent requests the replica serves without queueing
    mock_delay_s: float = Field(0.0, ge=0)  # kind=mock: delay per token
    mock_tokens: int = Field(8, ge=1)  # kind=mock: tokens per answer

    @property
    def metered(self) -> bool:
        """Whether this host's meter charges the replica (else its fit does)."""
        if self.meter is not None:
            return self.meter == "local"
        return not (self.device == "unmetered" or "://" in self.device)

    @model_validator(mode="after")
    def _check(self) -> ReplicaConfig:
        if self.kind == "url" and not self.url:
            raise ValueError("a replica of kind 'url' needs 'url'")
        if self.kind == "command" and not self.command:
            raise ValueError("a replica of kind 'command' needs 'command' (a list of arguments)")
        return self


class ModelConfig(_Strict):
    name: str
    replicas: list[ReplicaConfig] = Field(min_length=1)
    fit: str | None = (
        None  # path to a ModelFit JSON (energy_j) for the energy-aware balancer / cache cost
    )
    energy_per_token_j: float | None = Field(None, ge=0)  # fallback estimate when no fit is given


class RouterConfig(_Strict):
    """Multiplexing: ``model="auto"`` or ``model="router-<name>[-<threshold>]"`` lets a trained
    router (``wattserve route train`` -> ``file``) pick among the served models it knows.

    ``cost_source`` is what the router ranks models by: ``training`` (the costs the file was
    trained with, the default), ``fits`` (each model's fitted joules, ``models[].fit``, one
    for every routed model) or ``fixed`` (``costs``: one number per routed model). The
    startup log and ``/stats`` name it. ``use_fits: true/false`` is the older spelling of
    ``cost_source: fits/training``. The cache's recompute cost is fitted joules either way.
    """

    enabled: bool = False
    file: str | None = None  # a router saved by wattserve.route.Router.save
    cost_source: Literal["training", "fits", "fixed"] | None = None  # None: training
    costs: dict[str, float] | None = None  # cost_source: fixed, model -> cost (>= 0)
    use_fits: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> RouterConfig:
        if self.enabled and not self.file:
            raise ValueError(
                "router.enabled needs router.file (train one with `wattserve route train`)"
            )
        if self.use_fits is not None:
            implied: Literal["fits", "training"] = "fits" if self.use_fits else "training"
            if self.cost_source not in (None, implied):
                raise ValueError(
                    f"use_fits: {str(self.use_fits).lower()} contradicts "
                    f"cost_source: {self.cost_source}; give cost_source only"
                )
            self.cost_source = implied
        if self.cost_source is None:
            self.cost_source = "fixed" if self.costs is not None else "training"
        if self.cost_source == "fixed" and not self.costs:
            raise ValueError("cost_source: fixed needs 'costs' (model: cost, one per model)")
        if self.cost_source != "fixed" and self.costs is not None:
            raise ValueError("'costs' is for cost_source: fixed")
        if any(not v >= 0 for v in (self.costs or {}).values()):
            raise ValueError("router costs must be non-negative")
        return self


class CacheConfig(_Strict):
    """The response cache and where it persists its entries (``store``):

    - ``memory`` (the default): this process only, lost on restart;
    - ``sqlite`` with ``path``: a file that survives restarts (flushed on shutdown);
    - ``redis`` with ``url`` (``redis://HOST:PORT/DB``, ``rediss://``, ``unix://``): shared by
      every gateway using the same server and ``prefix``, each sees the others' entries.

    ``persist_path: FILE`` is the older spelling of ``store: sqlite`` + ``path: FILE``.
    """

    enabled: bool = True
    policy: Literal["lru", "lfu", "gdsf", "lec"] = "gdsf"
    capacity_entries: int | None = Field(default=10000, ge=1)
    capacity_bytes: int | None = Field(default=None, ge=1)
    store: Literal["memory", "sqlite", "redis"] | None = None  # None: sqlite if persist_path
    path: str | None = None  # store: sqlite
    url: str | None = None  # store: redis
    prefix: str = Field(default="wattserve:cache:", min_length=1)  # store: redis, the keys' prefix
    persist_path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> CacheConfig:
        if self.persist_path is not None:
            if self.store not in (None, "sqlite") or self.path not in (None, self.persist_path):
                raise ValueError("persist_path means store: sqlite; give store/path instead")
            self.store, self.path = "sqlite", self.persist_path
        if self.store is None:
            self.store = "memory"
        if self.store == "sqlite" and not self.path:
            raise ValueError("store: sqlite needs 'path' (the SQLite file)")
        if self.store == "redis" and not (self.url or "").startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("store: redis needs 'url': redis://HOST:PORT/DB")
        if self.store != "sqlite" and self.path is not None:
            raise ValueError("'path' is for store: sqlite")
        if self.store != "redis" and self.url is not None:
            raise ValueError("'url' is for store: redis")
        return self


class HealthConfig(_Strict):
    """Active probes and each replica's circuit breaker (``wattserve.serve.health``)."""

    interval_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    retry_after_s: float = Field(default=2.0, gt=0)  # an ejected replica's first cool-down
    max_retry_after_s: float = Field(default=60.0, gt=0)  # the cool-down doubles up to this
    failures: int = Field(default=3, ge=1)  # consecutive failures that eject a replica
    failure_rate: float = Field(default=0.5, gt=0, le=1)  # or this share of its last 20
    trial_timeout_s: float = Field(default=5.0, gt=0)  # the one-token POST that puts it back
    busy_grace_s: float = Field(default=10.0, ge=0)  # probe timeouts this soon after an answer


class TimeoutConfig(_Strict):
    connect_s: float = Field(default=2.0, gt=0)
    first_token_s: float = Field(default=30.0, gt=0)
    total_s: float = Field(default=300.0, gt=0)


class AuthConfig(_Strict):
    """Bearer keys as ``key`` or ``key:tenant`` lines (file) or comma-separated (env var)."""

    keys_file: str | None = None
    keys_env: str | None = "WATTSERVE_API_KEYS"
    required: bool | None = None  # None: required exactly when keys are configured
    # with keys set, every route but the OpenAPI document needs one; true lets /health and
    # /metrics answer without a key (for probes and scrapers on a trusted network)
    public_probes: bool = False


class LimitsConfig(_Strict):
    """What one client may hold or send; the defaults keep a gateway on the open network
    standing (docs/serve.md, "HTTP server and limits"). The server enforces the header
    timeout and sizes and the connection cap while reading; the app enforces the rest
    (``serve/limits.py``)."""

    header_read_timeout_s: float = Field(default=10.0, gt=0)  # from a request's first byte
    body_read_timeout_s: float = Field(default=30.0, gt=0)  # from the end of its head
    # idle keep-alive; granian counts it from the end of the last answer, like the header
    # timeout (one timer, never reset by a byte), and uses the shorter of the two
    keep_alive_s: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=8192)  # request line + headers
    max_url_bytes: int = Field(default=8192, ge=256)  # the request target (414 above)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)  # 413 above
    # the bodies being read at once hold at most this much memory; more answers 503
    max_buffered_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_connections: int = Field(default=4096, ge=1)  # more wait in the listen backlog
    max_in_flight: int = Field(default=1024, ge=1)  # requests being answered; more get 503
    retry_after_s: int = Field(default=1, ge=0)  # the Retry-After of a shed request
    # Host values accepted (a name, or ``*`` for any); a missing or repeated Host is a 400
    allowed_hosts: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class EnergyConfig(_Strict):
    meter: str = (
        "auto"  # auto | nvml | rapl | modeled | modeled:process | null | replay:PATH ('+' joins)
    )
    interval_s: float = Field(default=0.5, gt=0)
    attribution: Literal["active_time"] = "active_time"


class ServeConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models: list[ModelConfig] = Field(min_length=1)
    balancer: Literal["round_robin", "least_outstanding", "energy_aware"] = "least_outstanding"
    router: RouterConfig = Field(default_factory=RouterConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(8192, ge=1)
    log_content: bool = False  # prompts and completions are never logged unless this is set
    # a fits file written by ``wattserve fit``: each model's energy fit where ``models[].fit``
    # gives none, and the fitted charge of unmetered replicas per (model, device)
    fits: str | None = None
    # JSONL, one row per answered request (prompts and answers included): a request trace
    # that ``wattserve simulate --fits --trace`` replays
    request_log: str | None = None
    grace_s: float = Field(10.0, ge=0)
    fast_path: bool = True  # serve the two hot POST routes without FastAPI's routing
    server: Literal["granian", "uvicorn"] = "granian"  # the HTTP server (serve/server.py)

    @model_validator(mode="before")
    @classmethod
    def _older_spellings(cls, data: object) -> object:
        """Top-level ``max_body_bytes`` is the older spelling of ``limits.max_body_bytes``."""
        if isinstance(data, dict) and "max_body_bytes" in data:
            data = dict(data)
            limits = dict(data.get("limits") or {})
            limits.setdefault("max_body_bytes", data.pop("max_body_bytes"))
            data["limits"] = limits
        return data

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def read_config_file(path: str | Path) -> Any:
    """The parsed contents of a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from None
    try:
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's to fix
        raise ConfigError(f"cannot parse {p}: {exc}") from None
    return data or {}


def load_config(path: str | Path) -> ServeConfig:
    """Read a YAML or TOML file into a ``ServeConfig``."""
    return config_from_dict(read_config_file(path), source=str(path))


def config_from_dict(data: dict, source: str = "config") -> ServeConfig:
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(
            f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None
