"""The Tracer's events for asyncio: the event loop waits on the session's descriptor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ._plan.events import Event

if TYPE_CHECKING:  # the Tracer calls this module, not the other way round
    from ._tracer import Tracer

__all__ = ["aevents"]


async def aevents(tracer: Tracer, timeout: float | None) -> AsyncIterator[Event]:
    """See :meth:`rawprobe.Tracer.aevents`."""
    tracer.start()
    loop = asyncio.get_running_loop()
    fd = tracer.fileno()
    # A backend whose buffers wake their reader only when well filled is looked at this often.
    interval = tracer.poll_interval
    deadline = None if timeout is None else loop.time() + timeout
    while not tracer.stopped:
        batch = tracer.poll(0)
        for event in batch:
            yield event
        if tracer.finished():
            for event in tracer.drain():
                yield event
            return
        if batch:
            continue
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            return
        wait = remaining if interval is None else min(interval, remaining or interval)
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve, ready)
        try:
            await asyncio.wait_for(ready, wait)
        except asyncio.TimeoutError:
            if wait == remaining:
                return
        finally:
            loop.remove_reader(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
