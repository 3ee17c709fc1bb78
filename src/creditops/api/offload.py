"""A separate, bounded lane for the slow blocking work the API does on request.

A monitoring check reads a window of the decision log; a test alert waits on an SMTP or
webhook server that may never answer. Run in the request thread pool (40 threads shared by
every blocking call), 45 such requests against a hanging webhook took every thread, and key
look-ups, feedback and ``/ready`` waited 25 s behind them (issue 11). Here they get their
own small lane: at most ``threads`` run at once and at most ``queue`` more wait; beyond that
the request is refused at once with 503 ``busy`` and a ``Retry-After``, which a client or a
load balancer understands, instead of piling up. The request pool is left to everything
else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio

from creditops.api.problems import ApiProblemError

T = TypeVar("T")
RETRY_AFTER_S = 5


class SlowLane:
    def __init__(self, threads: int, queue: int) -> None:
        self._limiter = anyio.CapacityLimiter(threads)
        self._capacity = threads + queue
        self._in_flight = 0  # running and waiting; changed on the event loop only

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread of this lane; 503 ``busy`` when the lane is full."""
        if self._in_flight >= self._capacity:
            raise ApiProblemError(
                503,
                "busy",
                "Too many checks or test alerts are running; retry in a few seconds.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._in_flight += 1
        try:
            return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)
        finally:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight
