"""API-key lookups: cached, and one database lookup per key when the cache entry expires."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from starlette.requests import Request

from creditops.api.problems import ApiProblemError
from creditops.api.security import Authenticator
from creditops.domain.access import Principal, hash_key

KEY = "co_abc_secret"


def _request(key: str | None) -> Request:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


class CountingLookup:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, digest: str) -> Principal | None:
        with self.lock:
            self.calls += 1
        time.sleep(0.05)  # a slow database: concurrent requests arrive meanwhile
        if digest == hash_key(KEY):
            return Principal(key_id="abc", name="test", scopes=frozenset({"predict"}))
        return None


def test_concurrent_requests_share_one_lookup_per_key() -> None:
    lookup = CountingLookup()
    # The entry's lifetime counts from the request that started the lookup, so the TTL must
    # outlast a slow (loaded CI) thread hand-off plus the lookup; 0.2 s once did not.
    auth = Authenticator(lookup, enabled=True, cache_ttl_s=1.0)

    async def burst(key: str) -> list[Principal | BaseException]:
        return await asyncio.gather(
            *(auth.principal(_request(key)) for _ in range(20)), return_exceptions=True
        )

    async def scenario() -> None:
        first = await burst(KEY)
        assert all(isinstance(p, Principal) and p.key_id == "abc" for p in first)
        assert lookup.calls == 1
        await burst(KEY)  # cached
        assert lookup.calls == 1
        await asyncio.sleep(1.05)  # expired: the next burst refreshes once
        await burst(KEY)
        assert lookup.calls == 2
        wrong = await burst("co_abc_wrong")
        assert all(isinstance(e, ApiProblemError) and e.status == 401 for e in wrong)
        assert lookup.calls == 3

    asyncio.run(scenario())


def test_a_failed_lookup_fails_every_waiter_and_is_not_cached() -> None:
    calls = 0

    def broken(digest: str) -> Principal | None:
        nonlocal calls
        calls += 1
        time.sleep(0.02)
        raise RuntimeError("database down")

    auth = Authenticator(broken, enabled=True)

    async def scenario() -> None:
        results = await asyncio.gather(
            *(auth.principal(_request(KEY)) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert calls == 1
        with pytest.raises(RuntimeError):
            await auth.principal(_request(KEY))
        assert calls == 2

    asyncio.run(scenario())
