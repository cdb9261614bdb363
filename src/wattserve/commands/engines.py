"""``wattserve generate`` (one prompt, streamed answer) and ``wattserve mock-server``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from wattserve.errors import ConfigError


def _generate(
    prompt: str,
    model: str,
    base_url: str | None,
    backend: str,
    endpoint: str,
    max_tokens: int,
    temperature: float,
    seed: int | None,
    stop: list[str],
    ignore_eos: bool,
    threads: int,
    dtype: str,
) -> None:
    import asyncio
    import time

    from rich.console import Console

    from wattserve.engines.base import complete
    from wattserve.engines.factory import create_engine
    from wattserve.types import Message, Request

    err = Console(stderr=True)
    if model.endswith(".gguf") and Path(model).is_file():
        from wattserve.gguf_header import read_gguf_header

        read_gguf_header(Path(model))  # a cut or foreign file fails here, before any load
    kw = (
        {"dtype": dtype}
        if dtype != "auto" and not base_url and backend in ("auto", "local")
        else {}
    )
    engine = create_engine(model, base_url=base_url, backend=backend, threads=threads, **kw)
    request = Request(
        id="generate",
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        stop=tuple(stop),
        ignore_eos=ignore_eos,
        endpoint=endpoint,  # type: ignore[arg-type]
        prompt=prompt if endpoint == "completions" else None,
        messages=(Message("user", prompt),) if endpoint == "chat" else None,
    )

    def show(chunk: object) -> None:
        text = getattr(chunk, "text", "")
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    async def run() -> None:
        t0 = time.perf_counter()
        try:
            with err.status(f"loading {engine.name} ..."):
                if hasattr(engine, "check"):
                    await engine.check()
                await engine.start()
            load_s = time.perf_counter() - t0
            c = await complete(engine, request, on_chunk=show)
        finally:
            await engine.aclose()  # also when the check fails: no unclosed HTTP session
        sys.stdout.write("\n")
        if c.error:
            raise ConfigError(f"generation failed: {c.error}")
        decode = c.e2e_s - (c.ttft_s or 0.0)
        rate = (
            (c.output_tokens - 1) / decode if c.output_tokens > 1 and decode > 0 else float("nan")
        )
        err.print(
            f"[dim]{c.input_tokens} input + {c.output_tokens} output tokens ({c.token_source}), "
            f"finish {c.finish_reason}, load {load_s:.1f} s, TTFT {(c.ttft_s or 0) * 1000:.0f} ms, "
            f"decode {rate:.1f} tok/s[/dim]"
        )

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        prompt: str = typer.Argument(..., help="The prompt (a user message for --endpoint chat)."),
        model: str = typer.Option(
            "smollm2-135m",
            "--model",
            help="Short name (smollm2-135m, gemma3-270m), a .gguf file or a Hugging Face folder; "
            "with --base-url, the served model name.",
        ),
        base_url: str | None = typer.Option(
            None,
            "--base-url",
            help="An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: run the "
            "model in-process).",
        ),
        backend: str = typer.Option(
            "auto", "--backend", help="auto | local | llama-cpp | simulated | openai."
        ),
        endpoint: str = typer.Option(
            "chat", "--endpoint", help="chat (chat template applied) or completions (raw prompt)."
        ),
        max_tokens: int = typer.Option(
            128, "--max-tokens", "--output-len", min=1, help="Most tokens to generate."
        ),
        temperature: float = typer.Option(
            0.0, "--temperature", min=0.0, help="0 = greedy; else sampling."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
        stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
        ignore_eos: bool = typer.Option(
            False, "--ignore-eos", help="Generate exactly --max-tokens tokens."
        ),
        threads: int = typer.Option(
            1, "--threads", min=1, help="CPU threads for in-process engines."
        ),
        dtype: str = typer.Option(
            "auto",
            "--dtype",
            help="Local engine weights: auto (bfloat16 where the CPU has AMX, else float32), "
            "float32, bfloat16.",
        ),
    ) -> None:
        """Send one prompt to a model and stream the answer (checks a setup end to end)."""
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"--endpoint must be chat or completions, got {endpoint!r}")
        if dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"--dtype must be auto, float32 or bfloat16, got {dtype!r}")
        _generate(
            prompt,
            model,
            base_url,
            backend,
            endpoint,
            max_tokens,
            temperature,
            seed,
            stop,
            ignore_eos,
            threads,
            dtype,
        )

    @app.command("mock-server")
    def mock_server(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
        port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind."),
        token_delay_ms: float = typer.Option(
            0.0, "--token-delay-ms", min=0.0, help="Delay between output tokens."
        ),
        ttft_ms: float = typer.Option(
            0.0, "--ttft-ms", min=0.0, help="Delay before the first token."
        ),
        output_len: int = typer.Option(
            16, "--output-len", min=0, help="Output tokens per answer (capped by max_tokens)."
        ),
        follow_max_tokens: bool = typer.Option(
            False, "--follow-max-tokens", help="Answer exactly max_tokens tokens instead."
        ),
        model: str = typer.Option("mock", "--model", help="Model id the server reports."),
        fail_after: int | None = typer.Option(
            None, "--fail-after", min=0, help="Answer HTTP 500 after this many requests."
        ),
        die_mid_stream: int | None = typer.Option(
            None, "--die-mid-stream", min=0, help="Cut every stream after this many tokens."
        ),
    ) -> None:
        """Run a fast mock OpenAI-compatible server.

        Serves /v1/chat/completions, /v1/completions, /v1/models and /health.
        """
        from wattserve.engines.mock_server import MockConfig, serve

        cfg = MockConfig(
            output_len,
            ttft_ms,
            token_delay_ms,
            follow_max_tokens,
            fail_after,
            die_mid_stream,
            model,
        )
        from wattserve.commands.serve import ensure_can_listen

        ensure_can_listen(host, port)
        print(f"mock OpenAI server on http://{host}:{port}/v1 (Ctrl-C to stop)", file=sys.stderr)
        try:
            serve(host, port, cfg)
        except OSError as exc:
            raise ConfigError(f"cannot bind {host}:{port}: {exc}") from None
