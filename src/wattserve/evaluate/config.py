"""``EvalConfig``: what one evaluation run needs, validated; ``eval.json`` keeps it for resume."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattserve.errors import ConfigError

Backend = Literal["auto", "local", "llama-cpp", "openai", "simulated"]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks_path: str
    models: list[str] = Field(min_length=1)
    base_urls: list[str | None] = Field(default_factory=list)  # one per model (None: local)
    backend: Backend = "auto"
    endpoint: Literal["completions", "chat"] = "completions"
    threads: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)  # None: each item's own budget (its family's)
    stop: list[str] = Field(default_factory=lambda: ["\n"])
    max_concurrency: int = Field(1, ge=1)
    meter: str = "auto"
    energy_interval_s: float = Field(0.1, gt=0)
    timeout_s: float | None = Field(120.0, gt=0)
    limit: int | None = Field(None, ge=1)  # at most this many items per family
    bootstrap: int = Field(2000, ge=100)
    seed: int = 0
    result_dir: str = "runs"
    label: str | None = None

    @model_validator(mode="after")
    def _pair_urls(self) -> EvalConfig:
        if len(set(self.models)) != len(self.models):
            raise ValueError("each --model may be given once")
        if not self.base_urls:
            self.base_urls = [None] * len(self.models)
        elif len(self.base_urls) == 1 and len(self.models) > 1:
            self.base_urls = self.base_urls * len(self.models)
        elif len(self.base_urls) != len(self.models):
            raise ValueError("give one --base-url for all models or one per --model, in order")
        return self

    @classmethod
    def build(cls, **kw: object) -> EvalConfig:
        """Validate, turning pydantic's errors into one ``ConfigError`` line."""
        try:
            return cls.model_validate(kw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise ConfigError(f"invalid eval settings: {where}: {first['msg']}") from None
