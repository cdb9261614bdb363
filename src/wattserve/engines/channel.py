"""Hand items from an engine's worker thread to the asyncio consumer of ``stream()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from wattserve.errors import EngineUnavailable

END = object()  # sentinel delivered after the final item


class ThreadChannel:
    """A queue the worker thread fills with ``deliver`` and the event loop drains.

    Create it inside the consumer's running loop. ``deliver`` raises ``RuntimeError`` once
    that loop is closed (the consumer is gone). An exception delivered by the worker is
    raised to the consumer as ``EngineUnavailable``.
    """

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(self, item: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def close(self) -> None:
        """Deliver the end sentinel; a no-op when the consumer's loop is already closed."""
        try:
            self.deliver(END)
        except RuntimeError:
            pass

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise EngineUnavailable(f"{self.engine} failed: {item}") from item
            yield item
