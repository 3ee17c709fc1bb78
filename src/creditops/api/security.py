"""API-key authentication and per-operation scopes.

Keys look like ``co_<key id>_<secret>`` and are stored only as their sha256. Clients send
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A missing or wrong key is 401; a
right key without the needed scope is 403 (the scope dependencies are in
:mod:`creditops.api.deps`); the ``admin`` scope grants every operation.
Lookups are cached for a few seconds per process, so a revoked key stops working within
``cache_ttl_s`` on every worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from creditops.api.problems import ApiProblemError
from creditops.domain.access import ANONYMOUS, Principal, hash_key

log = logging.getLogger("creditops.api")

KeyLookup = Callable[[str], Principal | None]

# The two ways of presenting a key, as OpenAPI security schemes (``api/openapi.py`` puts
# the requirement on each operation that needs a key).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "co_<key id>_<secret>",
        "description": "An API key (`creditops keys create`), as `Authorization: Bearer <key>`.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key in an `X-API-Key` header.",
    },
}
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


class Authenticator:
    def __init__(self, lookup: KeyLookup, *, enabled: bool, cache_ttl_s: float = 5.0) -> None:
        self._lookup = lookup
        self.enabled = enabled
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # One database lookup per key at a time: when a cached entry expires under load,
        # the concurrent requests presenting that key share the one refresh.
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        if not enabled:
            log.warning(
                "API authentication is DISABLED (CREDITOPS_SERVE__AUTH_ENABLED=false): "
                "every caller has every scope. Use this for local demos only."
            )

    async def principal(self, request: Request) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        key = _presented_key(request)
        if not key:
            raise ApiProblemError(
                401, "unauthorized", "An API key is required (Authorization: Bearer <key>)."
            )
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = await self._refresh(digest, now)
        if found is None:
            raise ApiProblemError(401, "unauthorized", "The API key is not valid.")
        return found

    async def _refresh(self, digest: str, now: float) -> Principal | None:
        pending = self._inflight.get(digest)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                # the request doing the lookup was cancelled: look up ourselves
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            found = await run_in_threadpool(self._lookup, digest)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._inflight[digest]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, found)
        future.set_result(found)
        return found

    def forget(self, key_id: str | None = None) -> None:
        """Drop the cached look-ups of one key (all keys with None): a key revoked through
        the API stops working in this process at once, in the others within the cache
        period."""
        if key_id is None:
            self._cache.clear()
            return
        for digest, (_, found) in list(self._cache.items()):
            if found is not None and found.key_id == key_id:
                del self._cache[digest]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None
