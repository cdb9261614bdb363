"""``wattserve serve``: the OpenAI-compatible gateway; ``wattserve demo-gateway``: start it,
send a short mixed workload through the official openai SDK, print what the cache saved."""

from __future__ import annotations

from pathlib import Path

import typer

from wattserve.errors import ConfigError

SERVE_HELP = (
    "Run the OpenAI-compatible gateway described by --config (YAML or TOML): response cache, "
    "model multiplexer, replica pool with health checks, per-request energy, Prometheus /metrics."
)
DEMO_HELP = (
    "Start the gateway from --config in the background, send a short mixed workload with repeats "
    "through the openai SDK, print cache hits, joules saved and per-model counts, then stop it."
)


def demo_config_path() -> Path:
    """The demo's default config, shipped in the package (found from any directory)."""
    from importlib import resources

    return Path(str(resources.files("wattserve") / "data" / "serve-demo.yaml"))


def ensure_can_listen(host: str, port: int) -> None:
    """Fail with one clear line, before any replica or model starts, when ``host:port`` cannot
    be bound (a port in use, an address not on this machine). Port 0 (any free port) passes."""
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    with socket.socket(family, kind, proto) as sock:
        # the servers set SO_REUSEADDR too: a port left in TIME_WAIT is not "in use"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                + (" (another server holds it)" if exc.errno == 98 else "")
            ) from None


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def configure_logging(level: str) -> str:
    """Log to stderr: ``wattserve.*`` from ``level`` (routine lines such as "gateway ready" are
    INFO, trouble is WARNING), everything else from WARNING (from DEBUG at ``debug``).
    Returns the level for the HTTP server's own logs."""
    import logging

    name = level.lower()
    if name not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    ours = logging.getLevelNamesMapping()[name.upper()]
    others = ours if ours <= logging.DEBUG else max(ours, logging.WARNING)
    logging.basicConfig(level=others, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("wattserve").setLevel(ours)
    return logging.getLevelName(others).lower()


def register(app: typer.Typer) -> None:
    @app.command("serve", help=SERVE_HELP)
    def serve(
        config: Path = typer.Option(
            ..., "--config", "-c", help="gateway config file (.yaml/.yml/.toml)"
        ),
        host: str | None = typer.Option(None, "--host", help="override the config's host"),
        port: int | None = typer.Option(
            None, "--port", min=1, max=65535, help="override the config's port (1-65535)"
        ),
        log_level: str = typer.Option(
            "info",
            "--log-level",
            help="the gateway's own log level (debug|info|warning|error); the HTTP server's "
            "and other libraries' logs show from warning, or from debug at debug",
        ),
        backend: str = typer.Option(
            "process",
            "--backend",
            help="process: this one process; ray: a Ray Serve cluster (the config's ray: "
            "section; needs pip install 'wattserve[ray]')",
        ),
    ) -> None:
        from wattserve.serve.config import load_config

        server_log_level = configure_logging(log_level)
        if backend not in ("process", "ray"):
            raise ConfigError(f"--backend must be process or ray, not {backend!r}")
        if backend == "ray":
            from wattserve.serve.ray_backend import require_ray
            from wattserve.serve.ray_config import load_ray_config

            require_ray()
            cfg, ray_cfg = load_ray_config(config)
        else:
            cfg = load_config(config)
        if host is not None:
            cfg.host = host
        if port is not None:
            cfg.port = port
        ensure_can_listen(cfg.host, cfg.port)
        if cfg.port == 0:  # any free port: chosen here, so the start line names the real one
            from wattserve.engines.launcher import free_port

            cfg.port = free_port(cfg.host)
        if backend == "ray":
            from wattserve.serve.ray_backend import serve_forever

            typer.echo(
                f"starting wattserve on Ray Serve at http://{cfg.host}:{cfg.port}/v1 "
                f"({', '.join(m.name for m in cfg.models)}); Ctrl-C stops it"
            )
            serve_forever(cfg, ray_cfg)
            return
        from wattserve.serve.app import create_app, make_server, run_loop
        from wattserve.serve.app import serve as serve_app

        app_ = create_app(cfg)
        server = make_server(app_, cfg.host, cfg.port, cfg.grace_s, server_log_level)
        typer.echo(
            f"starting wattserve gateway on http://{cfg.host}:{cfg.port}/v1 "
            f"({', '.join(m.name for m in cfg.models)}); Ctrl-C stops it gracefully"
        )
        try:
            run_loop(serve_app(app_, server, announce=f"http://{cfg.host}:{cfg.port}/v1"))
        except OSError as exc:  # lost a race for the port after the check above
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from None

    @app.command("demo-gateway", help=DEMO_HELP)
    def demo_gateway(
        config: Path | None = typer.Option(
            None,
            "--config",
            "-c",
            help="gateway config (default: the packaged serve-demo.yaml, the embedded model on "
            "two replicas)",
        ),
        num_prompts: int = typer.Option(24, "--num-prompts", help="requests to send"),
        max_concurrency: int = typer.Option(
            4, "--max-concurrency", help="requests in flight at once"
        ),
        output_len: int = typer.Option(16, "--output-len", help="max_tokens per request"),
        seed: int = typer.Option(0, "--seed", help="workload seed"),
        port: int = typer.Option(
            0, "--port", min=0, max=65535, help="gateway port (0: a free one)"
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the workload's result as JSON instead of a table."
        ),
    ) -> None:
        from wattserve.serve.config import load_config
        from wattserve.serve.demo import print_report, run_workload

        if num_prompts < 1 or max_concurrency < 1 or output_len < 1:
            raise ConfigError(
                "--num-prompts, --max-concurrency and --output-len must be at least 1"
            )
        config = config or demo_config_path()
        cfg = load_config(config)
        cfg.port = port
        host = cfg.host if cfg.host != "0.0.0.0" else "127.0.0.1"
        ensure_can_listen(host, port)
        from rich.console import Console

        from wattserve.console import print_json, stdout_console
        from wattserve.serve.app import BackgroundServer, create_app

        console = Console(stderr=True) if as_json else stdout_console()
        with console.status(f"starting the gateway ({config}) and its replicas ..."):
            app = create_app(cfg)
            server = BackgroundServer(app, host, 0, cfg.grace_s)
            server.port = port or server.port
            server.start(timeout_s=900)
        try:
            console.print(
                f"gateway on {server.url}/v1 over {len(app.service.pool.replicas)} replica(s)"
            )
            result = run_workload(
                server.url + "/v1",
                model=cfg.models[0].name,
                n=num_prompts,
                concurrency=max_concurrency,
                max_tokens=output_len,
                seed=seed,
                console=console,
            )
            if as_json:
                print_json({"url": server.url, **vars(result)})
            else:
                print_report(result, server.url, console)
        finally:
            with console.status("stopping the gateway ..."):
                server.stop()
