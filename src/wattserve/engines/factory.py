"""Build an engine from a model name, an optional server URL and a backend choice."""

from __future__ import annotations

from typing import Any

from wattserve.errors import ConfigError

BACKENDS = ("auto", "local", "llama-cpp", "simulated", "openai")


def create_engine(
    model: str,
    base_url: str | None = None,
    backend: str = "auto",
    threads: int = 1,
    **kw: Any,
) -> Any:
    """An engine (``name``, ``start``, ``aclose``, ``stream``), not yet started.

    ``base_url`` given (or backend ``openai``) -> ``OpenAIHTTPEngine`` talking to that
    server; otherwise backend ``auto``/``local`` -> ``LocalEngine`` (transformers on CPU or
    CUDA: ``device``, ``load_format="dummy"`` for a bundled config with random weights),
    ``llama-cpp`` -> ``LlamaCppEngine``, ``simulated`` -> ``SimulatedEngine``. Extra keyword
    arguments go to the engine's constructor.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if base_url or backend == "openai":
        if not base_url:
            raise ConfigError("the openai backend needs --base-url")
        if backend not in ("auto", "openai"):
            raise ConfigError(
                f"--base-url selects the OpenAI HTTP client; backend {backend!r} "
                "cannot be used with it"
            )
        from wattserve.engines.openai_http import OpenAIHTTPEngine

        return OpenAIHTTPEngine(base_url, model=model, **kw)
    if backend == "simulated":
        from wattserve.engines.simulated import SimulatedEngine

        return SimulatedEngine(model=model or "simulated", **kw)
    if backend == "llama-cpp":
        from wattserve.engines.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(model, threads=threads, **kw)
    from wattserve.engines.local import LocalEngine

    if kw.get("load_format", "auto") == "dummy":
        from wattserve.engines.dummy import config_dict

        config_dict(model)  # fail fast with the list of bundled configs
    else:
        from wattserve.engines.models import resolve_model

        resolve_model(model)  # fail fast with the list of known models
    return LocalEngine(model, threads=threads, **kw)
