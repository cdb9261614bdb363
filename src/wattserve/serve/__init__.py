"""The OpenAI-compatible gateway: response cache, model multiplexer, replica pool with health
checks, per-request energy and Prometheus metrics behind one HTTP server.

Public API (names load lazily: ``import wattserve.serve`` imports neither FastAPI nor aiohttp)::

    from wattserve.serve import BackgroundServer, config_from_dict, create_app
    cfg = config_from_dict({"models": [{"name": "mock", "replicas": [{"kind": "mock"}]}]})
    with BackgroundServer(create_app(cfg)) as srv:     # in a thread on 127.0.0.1, free port
        ...                                            # POST srv.url + "/v1/chat/completions"

``load_config(path)`` reads the YAML/TOML file ``wattserve serve --config`` takes;
``run_loop(serve(app, make_server(app, host, port, grace_s)))`` serves in the foreground.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.openai.answers import APIError
    from wattserve.serve.app import BackgroundServer, create_app, make_server, run_loop, serve
    from wattserve.serve.config import (
        ModelConfig,
        ReplicaConfig,
        ServeConfig,
        config_from_dict,
        load_config,
    )
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.service import Service

__all__ = [
    "APIError",
    "BackgroundServer",
    "Gateway",
    "ModelConfig",
    "ReplicaConfig",
    "ServeConfig",
    "Service",
    "config_from_dict",
    "create_app",
    "load_config",
    "make_server",
    "run_loop",
    "serve",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.serve.app": (
            "BackgroundServer",
            "create_app",
            "make_server",
            "run_loop",
            "serve",
        ),
        "wattserve.serve.config": (
            "ModelConfig",
            "ReplicaConfig",
            "ServeConfig",
            "config_from_dict",
            "load_config",
        ),
        "wattserve.serve.pipeline": ("Gateway",),
        "wattserve.serve.service": ("Service",),
        "wattserve.openai.answers": ("APIError",),
    },
)
