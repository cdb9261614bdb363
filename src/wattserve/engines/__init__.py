"""Inference engines behind the ``Engine`` seam (``protocols.py``): each streams ``Chunk``s for
a ``Request``; ``complete`` turns a stream into a ``Completion`` with raw timestamps.

Public API (names load lazily: ``import wattserve.engines`` imports neither torch nor aiohttp)::

    from wattserve.engines import MockServer, complete, create_engine
    with MockServer(output_len=8) as srv:              # mock OpenAI server on 127.0.0.1
        engine = create_engine("mock", base_url=srv.url)   # OpenAIHTTPEngine
        # completion = await complete(engine, request)

``create_engine`` picks ``OpenAIHTTPEngine`` (a URL), ``LocalEngine`` (transformers on CPU),
``LlamaCppEngine`` or ``SimulatedEngine`` (latency and joules from fits or fixed figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.engines.base import complete
    from wattserve.engines.factory import BACKENDS, create_engine
    from wattserve.engines.launcher import Launcher
    from wattserve.engines.llama_cpp import LlamaCppEngine
    from wattserve.engines.local import LocalEngine
    from wattserve.engines.mock_server import MockConfig, MockServer
    from wattserve.engines.models import DEFAULT_MODEL, known_models, resolve_model
    from wattserve.engines.openai_http import OpenAIHTTPEngine, api_base
    from wattserve.engines.simulated import SimulatedEngine

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Launcher",
    "LlamaCppEngine",
    "LocalEngine",
    "MockConfig",
    "MockServer",
    "OpenAIHTTPEngine",
    "SimulatedEngine",
    "api_base",
    "complete",
    "create_engine",
    "known_models",
    "resolve_model",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.engines.base": ("complete",),
        "wattserve.engines.factory": ("BACKENDS", "create_engine"),
        "wattserve.engines.launcher": ("Launcher",),
        "wattserve.engines.llama_cpp": ("LlamaCppEngine",),
        "wattserve.engines.local": ("LocalEngine",),
        "wattserve.engines.mock_server": ("MockConfig", "MockServer"),
        "wattserve.engines.models": ("DEFAULT_MODEL", "known_models", "resolve_model"),
        "wattserve.engines.openai_http": ("OpenAIHTTPEngine", "api_base"),
        "wattserve.engines.simulated": ("SimulatedEngine",),
    },
)
