"""The ``ray:`` section of a gateway config (``wattserve serve --backend ray``).

The rest of the file is the single-process gateway's ``ServeConfig`` unchanged; ``ray:`` says
where the Ray cluster is and how the two kinds of deployment are placed:

- ``ingress``: the gateway pipeline (cache, router, balancer, health, books) as a Ray Serve
  deployment behind Ray's HTTP proxy, ``num_replicas`` or ``autoscaling_config``;
- ``engines``: one deployment per replica group (``models[].replicas[]``), keyed by
  ``<model>`` (every group of that model) or ``<model>/<index>`` (one group), each replica
  hosting one engine copy with ``num_cpus`` / ``num_gpus`` / ``memory`` reserved. Without an
  entry a group runs ``copies`` replicas with ``threads`` CPUs each.

``address: auto`` joins the cluster started by ``ray start`` on this node; no address starts
a local one (``num_cpus`` caps it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattserve.errors import ConfigError
from wattserve.serve.config import (
    ModelConfig,
    ReplicaConfig,
    ServeConfig,
    config_from_dict,
    read_config_file,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentConfig(_Strict):
    """Placement and scaling of one Ray Serve deployment."""

    num_replicas: int | None = Field(default=None, ge=1, le=4096)
    autoscaling_config: dict[str, Any] | None = None  # Ray Serve's own keys, passed through
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, ge=0)  # bytes reserved per replica
    max_ongoing_requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DeploymentConfig:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("give num_replicas or autoscaling_config, not both")
        return self

    def options(self, default_replicas: int, default_cpus: float, ongoing: int) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        actor: dict[str, Any] = {
            "num_cpus": default_cpus if self.num_cpus is None else self.num_cpus,
            "num_gpus": self.num_gpus,
        }
        if self.memory is not None:
            actor["memory"] = self.memory
        out: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests or ongoing,
        }
        if self.autoscaling_config is not None:
            out["autoscaling_config"] = self.autoscaling_config
        else:
            out["num_replicas"] = self.num_replicas or default_replicas
        return out


class RayConfig(_Strict):
    address: str | None = None  # "auto" (or ray://HOST:PORT): join; None: start a local one
    namespace: str = "wattserve"
    app_name: str = Field(default="wattserve", min_length=1)
    num_cpus: int | None = Field(default=None, ge=1)  # a local cluster's CPUs (None: all of them)
    ingress: DeploymentConfig = Field(default_factory=DeploymentConfig)
    engines: dict[str, DeploymentConfig] = Field(default_factory=dict)
    engine_meter: str | None = None  # each engine node's meter; None: the config's energy.meter
    request_timeout_s: float | None = Field(
        default=None, gt=0
    )  # Ray's HTTP proxy; None: its default


class EngineGroup(BaseModel):
    """One replica group of the gateway config as an engine deployment."""

    model_config = ConfigDict(frozen=True)

    deployment: str  # the Ray Serve deployment name
    model: str
    index: int
    spec: ReplicaConfig

    @property
    def engine_model(self) -> str:
        return self.spec.engine_model or self.model


def engine_groups(cfg: ServeConfig) -> list[EngineGroup]:
    """Every ``models[].replicas[]`` entry, named ``engine-<model>-<index>`` (characters Ray
    does not take in a deployment name become ``_``)."""
    out = []
    for m in cfg.models:
        for i, spec in enumerate(m.replicas):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in m.name)
            out.append(
                EngineGroup(deployment=f"engine-{safe}-{i}", model=m.name, index=i, spec=spec)
            )
    return out


def group_options(rc: RayConfig, group: EngineGroup) -> DeploymentConfig:
    """The deployment settings of ``group``: ``engines["<model>/<i>"]``, else
    ``engines["<model>"]``, else the defaults."""
    found = rc.engines.get(f"{group.model}/{group.index}") or rc.engines.get(group.model)
    return found or DeploymentConfig()


def check_engine_keys(rc: RayConfig, models: list[ModelConfig]) -> None:
    known = {m.name for m in models} | {
        f"{m.name}/{i}" for m in models for i in range(len(m.replicas))
    }
    unknown = sorted(set(rc.engines) - known)
    if unknown:
        raise ConfigError(
            f"ray.engines: {', '.join(unknown)} names no model or replica group "
            f"(use <model> or <model>/<index>; known: {', '.join(sorted(known))})"
        )


def split_config(data: dict[str, Any], source: str = "config") -> tuple[ServeConfig, RayConfig]:
    """The gateway config and its ``ray:`` section from one parsed document."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    data = dict(data)
    raw = data.pop("ray", None) or {}
    cfg = config_from_dict(data, source=source)
    try:
        rc = RayConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: ray.{where}: {first['msg']}") from None
    check_engine_keys(rc, cfg.models)
    return cfg, rc


def load_ray_config(path: str | Path) -> tuple[ServeConfig, RayConfig]:
    """Read a YAML or TOML gateway config with an optional ``ray:`` section."""
    return split_config(read_config_file(path), source=str(path))
