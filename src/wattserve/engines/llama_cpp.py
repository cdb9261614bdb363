"""Optional in-process llama.cpp engine (``llama-cpp-python``), loading the same GGUF files.

It SERIALISES requests: llama-cpp-python's ``Llama`` object decodes one sequence at a
time, so concurrent ``stream()`` calls queue on a lock and run one after another (no
batching; use the local transformers engine or a ``llama_cpp.server`` replica behind the
OpenAI HTTP engine for concurrency). Generation runs in a worker thread; tokens reach the
caller's event loop as they are produced. ``ignore_eos`` is honoured by biasing the EOS
token's logit to -inf.

Install: ``pip install --only-binary llama-cpp-python --find-links ../shared/wheels
llama-cpp-python==0.3.36``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from wattserve.engines.base import EngineBase
from wattserve.engines.channel import ThreadChannel
from wattserve.engines.models import DEFAULT_MODEL, resolve_model
from wattserve.errors import ConfigError, EngineUnavailable
from wattserve.types import Chunk, Request, Usage


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppEngine(EngineBase):
    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        threads: int = 1,
        n_ctx: int = 2048,
        name: str | None = None,
    ) -> None:
        if threads < 1:
            raise ConfigError("threads must be >= 1")
        self.model_name = model or DEFAULT_MODEL
        self.threads = threads
        self.n_ctx = n_ctx
        self.name = name or f"llama-cpp:{self.model_name}"
        self.llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one request at a time

    def load(self) -> None:
        with self._load_lock:
            if self.llm is not None:
                return
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise EngineUnavailable(
                    "llama-cpp-python is not installed: pip install --only-binary llama-cpp-python "
                    "--find-links ../shared/wheels llama-cpp-python==0.3.36"
                ) from exc
            resolved = resolve_model(self.model_name)
            if resolved.gguf_path is None:
                raise EngineUnavailable(
                    "the llama.cpp engine needs a .gguf file; "
                    f"{self.model_name} is a Hugging Face folder"
                )
            self.llm = Llama(
                model_path=str(resolved.gguf_path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )

    async def start(self) -> None:
        if self.llm is None:
            await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            await asyncio.to_thread(self._close, llm)

    def _close(self, llm: Any) -> None:
        with self._run_lock:
            llm.close()

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def _generate(self, request: Request, deliver: Any, stop_flag: threading.Event) -> None:
        with self._run_lock:
            llm = self.llm
            if llm is None:
                raise EngineUnavailable("llama.cpp engine is closed")
            kw: dict[str, Any] = {
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "top_k": 0,
                "min_p": 0.0,
                "repeat_penalty": 1.0,
                "stop": list(request.stop) or None,
                "seed": request.seed,
                "stream": True,
            }
            if request.ignore_eos:
                kw["logit_bias"] = {llm.token_eos(): float("-inf")}
            if request.messages:
                msgs = [{"role": m.role, "content": m.content} for m in request.messages]
                n_in = len(
                    llm.tokenize(self._chat_prompt(msgs).encode(), add_bos=False, special=True)
                )
                it = llm.create_chat_completion(messages=msgs, **kw)
            else:
                prompt = request.prompt or ""
                n_in = len(llm.tokenize(prompt.encode(), add_bos=False, special=False))
                it = llm.create_completion(prompt=prompt, **kw)
            n_out = 0
            finish = None
            for part in it:
                if stop_flag.is_set():
                    break
                c = part["choices"][0]
                text = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
                if text:
                    n_out += 1
                    deliver(Chunk(text=text, t_s=time.perf_counter(), tokens=1))
                finish = c.get("finish_reason") or finish
            deliver(
                Chunk(
                    text="",
                    t_s=time.perf_counter(),
                    finish_reason=finish or "stop",
                    usage=Usage(n_in, n_out, source="engine"),
                )
            )

    def _chat_prompt(self, msgs: list[dict[str, str]]) -> str:
        template = (self.llm.metadata or {}).get("tokenizer.chat_template")
        if not template:
            return "\n".join(m["content"] for m in msgs)
        import jinja2

        return jinja2.Template(template).render(messages=msgs, add_generation_prompt=True)

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        await self.start()
        channel = ThreadChannel("llama.cpp")
        stop_flag = threading.Event()

        def work() -> None:
            try:
                self._generate(request, channel.deliver, stop_flag)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                channel.deliver(exc)
            finally:
                channel.close()

        threading.Thread(target=work, name=f"wattserve-{self.name}", daemon=True).start()
        try:
            async for item in channel.items():
                yield item
        finally:
            stop_flag.set()
