"""The embedded default engine: real inference with transformers + PyTorch, CPU or CUDA.

One background worker thread owns the model. ``stream()`` (async, any event loop) hands a
``Sequence`` to the worker and yields ``Chunk``s as the worker produces tokens. The worker
does step-level continuous batching (``engines.batch``): a newcomer is prefilled and joins
the running batch at the next decode step; finished sequences leave at once.

``device`` is ``cpu`` (default) or ``cuda[:i]``: on CUDA the model runs in bfloat16 with
PyTorch SDPA attention and every tensor of the batch stays on the GPU. ``load_format
dummy`` builds a bundled config with random weights (``engines.dummy``) for speed and
energy measurements where no weights can be fetched. Loading the model (device, dtype,
tokenizer, end-of-sequence ids) is ``engines.local_loader``; this module is the engine loop.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from wattserve.engines.base import EngineBase
from wattserve.engines.channel import END, ThreadChannel
from wattserve.engines.dummy import DUMMY_NOTE, LOAD_FORMATS, TOKENIZER_NOTE
from wattserve.engines.local_loader import (
    DTYPES,
    build_dummy,
    check_device,
    eos_ids,
    import_runtime,
    load_checkpoint,
    max_context,
    prepare_device,
    resolve_dtype,
)
from wattserve.engines.models import DEFAULT_MODEL, ResolvedModel, resolve_model
from wattserve.engines.sequence import Emission, Sequence, Status
from wattserve.errors import ConfigError
from wattserve.types import Chunk, Request, Usage

__all__ = ["DTYPES", "LocalEngine", "check_device"]


class LocalEngine(EngineBase):
    """In-process transformers engine with continuous batching (one worker thread).

    ``threads`` sets ``torch.set_num_threads`` in the worker; ``max_batch`` bounds the
    running batch (more requests wait). ``start()`` loads the model (idempotent).
    ``dtype``: ``auto`` (default: bfloat16 where the CPU advertises ``amx_bf16``, else
    float32), ``float32`` or ``bfloat16``. Measured here (Xeon with AMX, 1 thread, 16
    requests of 64 in / 32 out): float32 6.3 -> 20 output tok/s from concurrency 1 to 8,
    bfloat16 6.4 -> 38 tok/s (``benchmarks/engine_batching.py``).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        threads: int = 1,
        max_batch: int = 16,
        name: str | None = None,
        dtype: str = "auto",
        device: str = "cpu",
        load_format: str = "auto",
        memory_fraction: float | None = None,
    ) -> None:
        if load_format not in LOAD_FORMATS:
            raise ConfigError(
                f"load format must be one of {', '.join(LOAD_FORMATS)}, got {load_format!r}"
            )
        if memory_fraction is not None and not 0 < memory_fraction <= 1:
            raise ConfigError(f"memory fraction must be in (0, 1], got {memory_fraction}")
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if threads < 1:
            raise ConfigError("threads must be >= 1")
        if max_batch < 1:
            raise ConfigError("max_batch must be >= 1")
        self.model_name = model or DEFAULT_MODEL
        self.threads = threads
        self.max_batch = max_batch
        self.dtype = dtype
        self.device = check_device(device)
        self.load_format = load_format
        self.memory_fraction = memory_fraction
        self.resolved_dtype = resolve_dtype(dtype, self.device)
        self.attention = "sdpa" if self.device.startswith("cuda") else "wattserve_gqa"
        self.name = name or f"local:{self.model_name}"
        self.resolved: ResolvedModel | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.eos_ids: frozenset[int] = frozenset()
        self.max_context = 2048
        self.load_s: float | None = None
        self._pending: queue.SimpleQueue[Sequence | None] = queue.SimpleQueue()
        self._load_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closing = threading.Event()
        self.steps = 0  # decode steps run (for tests and stats)
        self.max_rows_seen = 0

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load tokenizer and model (blocking; converts the GGUF once into the cache)."""
        with self._load_lock:
            if self.model is not None:
                return
            t0 = time.perf_counter()
            torch, attn = import_runtime(self.device)
            self._prepare_device(torch)
            dtype = getattr(torch, self.resolved_dtype)
            tok: Any
            model: Any
            if self.load_format == "dummy":
                tok, model = build_dummy(self.model_name, dtype, self.device, attn)
            else:
                self.resolved = resolve_model(self.model_name)
                tok, model = load_checkpoint(self.resolved, dtype, self.device, attn)
            model.eval()
            self.eos_ids = eos_ids(tok, model)
            self.max_context = max_context(model)
            self.tokenizer, self.model = tok, model
            self._closing.clear()
            self._worker = threading.Thread(
                target=self._run, name=f"wattserve-{self.name}", daemon=True
            )
            self._worker.start()
            self.load_s = time.perf_counter() - t0

    def _prepare_device(self, torch: Any) -> None:
        """Check that the CUDA device exists and cap this process's share of its memory."""
        prepare_device(torch, self.device, self.memory_fraction)

    def facts(self) -> dict[str, Any]:
        """What this engine runs, for run records (``weights`` says ``dummy weights``)."""
        dummy = self.load_format == "dummy"
        return {
            "engine": "local",
            "model": self.model_name,
            "device": self.device,
            "dtype": self.resolved_dtype,
            "attention": self.attention,
            "load_format": self.load_format,
            "weights": DUMMY_NOTE if dummy else "checkpoint",
            "tokenizer": TOKENIZER_NOTE if dummy else "the model's own",
            "memory_fraction": self.memory_fraction,
            "max_batch": self.max_batch,
            "threads": self.threads,
        }

    async def start(self) -> None:
        if self.model is None:
            await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def healthy(self) -> bool:
        """False once the batching worker thread has died (until ``aclose``)."""
        return self._worker is None or self._worker.is_alive()

    def close(self) -> None:
        """Stop the worker (waiting requests get an error) and drop the model."""
        worker = self._worker
        if worker is None:
            return
        self._closing.set()
        self._pending.put(None)
        worker.join(30)
        self._worker = None
        self.model = None

    # ---------------------------------------------------------------- tokenizer
    def count_tokens(self, text: str) -> int:
        self._need_loaded()
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def make_prompt(self, n_tokens: int, seed: int = 0) -> str:
        """Text of exactly ``n_tokens`` tokens built from seeded random vocabulary words."""
        self._need_loaded()
        if n_tokens <= 0:
            return ""
        tok = self.tokenizer
        rng = random.Random(seed)
        words = self._word_ids()
        ids = [rng.choice(words) for _ in range(n_tokens)]
        for _ in range(20):
            text = tok.decode(ids).strip()
            got = tok.encode(text, add_special_tokens=False)
            if len(got) == n_tokens:
                return text
            ids = (
                got[:n_tokens]
                if len(got) > n_tokens
                else got + [rng.choice(words) for _ in range(n_tokens - len(got))]
            )
        raise ConfigError(f"could not build a prompt of exactly {n_tokens} tokens")

    def _word_ids(self) -> list[int]:
        cached = getattr(self, "_words", None)
        if cached is None and hasattr(self.tokenizer, "word_ids"):
            cached = self._words = list(self.tokenizer.word_ids())
        if cached is None:
            cached = sorted(
                i
                for t, i in self.tokenizer.get_vocab().items()
                if t[:1] in ("Ġ", "▁") and t[1:].isascii() and t[1:].isalpha() and 3 <= len(t) <= 9
            )
            self._words = cached
        return cached

    def prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the request's prompt (chat template applied for chat requests)."""
        self._need_loaded()
        tok = self.tokenizer
        special = True  # raw text: the tokenizer adds BOS where the model expects it
        if request.messages:
            msgs = [{"role": m.role, "content": m.content} for m in request.messages]
            if tok.chat_template:  # the rendered template carries its own special tokens
                text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                special = False
            else:  # base model: plain concatenation
                text = "\n".join(m["content"] for m in msgs) + "\n"
        else:
            text = request.prompt or ""
        ids = tok.encode(text, add_special_tokens=special)
        if not ids:
            ids = [tok.bos_token_id if tok.bos_token_id is not None else next(iter(self.eos_ids))]
        return ids

    def _need_loaded(self) -> None:
        if self.tokenizer is None:
            self.load()

    # ------------------------------------------------------------------ serving
    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        await self.start()
        if request.max_tokens < 1:
            raise ConfigError("max_tokens must be >= 1")
        ids = self.prompt_ids(request)
        if len(ids) >= self.max_context:
            raise ConfigError(
                f"prompt of {len(ids)} tokens exceeds the context of {self.max_context}"
            )
        channel = ThreadChannel("local engine")
        seq = Sequence(
            request_id=request.id,
            prompt_ids=ids,
            max_tokens=min(request.max_tokens, self.max_context - len(ids)),
            temperature=float(request.temperature or 0.0),
            top_p=float(request.top_p if request.top_p is not None else 1.0),
            seed=request.seed,
            stop=tuple(s for s in request.stop if s),
            ignore_eos=request.ignore_eos,
            eos_ids=self.eos_ids,
            deliver=channel.deliver,
        )
        self._pending.put(seq)
        try:
            async for item in channel.items():
                emission: Emission = item
                usage = None
                if emission.finish_reason is not None:
                    usage = Usage(seq.input_tokens, seq.output_tokens, source="engine")
                yield Chunk(
                    text=emission.text,
                    t_s=time.perf_counter(),
                    tokens=emission.tokens,
                    finish_reason=emission.finish_reason,
                    usage=usage,
                )
        finally:
            seq.cancelled.set()

    # ------------------------------------------------------------------- worker
    def _run(self) -> None:
        import torch

        from wattserve.engines.batch import DecodeBatch, sample_ids

        torch.set_num_threads(self.threads)
        if self.device.startswith("cuda"):  # the worker thread needs its own current device
            self._prepare_device(torch)
        batch = DecodeBatch(self.model, self.device)
        with torch.inference_mode():
            while not self._closing.is_set():
                try:
                    self._admit(batch, block=len(batch) == 0)
                    if len(batch):
                        self._decode(batch, sample_ids)
                except Exception as exc:  # noqa: BLE001 - report to every waiting consumer
                    for seq in batch.rows:
                        self._fail(seq, exc)
                    batch.keep([])
        for seq in batch.rows:
            self._fail(seq, RuntimeError("engine closed"))
        self._drain_pending()

    def _admit(self, batch: Any, block: bool) -> None:
        import torch

        from wattserve.engines.batch import sample

        while len(batch) < self.max_batch:
            try:
                seq = self._pending.get(timeout=0.5) if block else self._pending.get_nowait()
            except queue.Empty:
                return
            if seq is None:  # close signal
                return
            block = False
            if seq.cancelled.is_set():
                continue
            if not seq.greedy:
                seq.generator = torch.Generator(device=self.device).manual_seed(
                    seq.seed if seq.seed is not None else random.getrandbits(63)
                )
            try:
                logits, kv = batch.prefill(seq)
            except Exception as exc:  # noqa: BLE001
                self._fail(seq, exc)
                continue
            token = sample(logits.unsqueeze(0), [seq])[0]
            seq.status = Status.RUNNING
            if not self._emit(seq, seq.accept(token, self.tokenizer)):
                batch.join(seq, kv, token)
                self.max_rows_seen = max(self.max_rows_seen, len(batch))

    def _decode(self, batch: Any, sample_ids: Any) -> None:
        logits = batch.step()
        self.steps += 1
        ids = sample_ids(logits, batch.rows)
        tokens = [int(t) for t in ids.tolist()]  # the one device-to-host copy of a step
        keep: list[int] = []
        for i, (seq, token) in enumerate(zip(batch.rows, tokens, strict=True)):
            if seq.cancelled.is_set():
                continue
            if not self._emit(seq, seq.accept(token, self.tokenizer)):
                keep.append(i)
        batch.set_last(ids)
        batch.keep(keep)

    def _emit(self, seq: Sequence, emission: Emission) -> bool:
        """Deliver one emission; True when the sequence is finished (or its consumer is gone)."""
        try:
            if emission.text or emission.tokens or emission.finish_reason:
                seq.deliver(emission)
            if emission.finish_reason is not None:
                seq.status = Status.FINISHED
                seq.deliver(END)
                return True
        except RuntimeError:  # the consumer's event loop is closed
            seq.cancelled.set()
            return True
        return seq.cancelled.is_set()

    def _fail(self, seq: Sequence, exc: BaseException) -> None:
        seq.status = Status.FINISHED
        try:
            seq.deliver(exc)
        except RuntimeError:
            pass

    def _drain_pending(self) -> None:
        while True:
            try:
                seq = self._pending.get_nowait()
            except queue.Empty:
                return
            if seq is not None:
                self._fail(seq, RuntimeError("engine closed"))
