"""Send a short mixed workload with repeats through a running wattserve gateway with the
official openai SDK, then print cache hits, joules saved and per-model counts.

    wattserve serve --config examples/serve-demo.yaml &
    python examples/gateway_demo.py --base-url http://127.0.0.1:8088/v1

(`wattserve demo-gateway` does both and stops the gateway afterwards.)
"""

from __future__ import annotations

import argparse

from rich.console import Console

from wattserve.serve.demo import print_report, run_workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8088/v1")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--api-key", default="unused")
    p.add_argument("--num-prompts", type=int, default=24)
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    console = Console()
    r = run_workload(
        a.base_url,
        a.model,
        a.num_prompts,
        a.max_concurrency,
        a.output_len,
        a.seed,
        a.api_key,
        console,
    )
    print_report(r, a.base_url.removesuffix("/v1"), console)


if __name__ == "__main__":
    main()
