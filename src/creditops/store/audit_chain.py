"""The audit trail as a hash chain (tamper evidence).

Every audit record carries ``seq`` (1, 2, 3, ... with no gap), the hash of the record before
it (``prev_hash``; :data:`GENESIS` for the first) and its own ``hash``: the SHA-256 of its
canonical serialisation (:func:`canonical`), which includes ``prev_hash``. A single-row
table (``audit_head``) holds the last ``seq`` and ``hash``; appending a record updates it
first, which serialises writers on both databases (the row lock on PostgreSQL, the write
lock on SQLite), so the chain never forks.

:func:`verify_chain` walks the records in ``seq`` order and names the first one that was
changed (its hash does not match its content), removed (a gap in ``seq``, or a broken link)
or reordered, and records removed from the end (the head names a later record). What a hash
chain cannot show: someone who can rewrite the whole table *and* the head from some record
on. Against that, keep the head hash somewhere else (``creditops audit verify`` prints it;
a daily copy in a ticket or an external log is enough to anchor it).

The serialisation is versioned (:data:`CHAIN_VERSION`) and must never change for existing
records: the migration that introduced the chain hashed the records that existed then with
the same function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

CHAIN_VERSION = 1
GENESIS = "0" * 64


def normalise(details: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` as they will read back from a JSON column (tuples as lists, keys as
    strings, anything else as its text), so the hash computed at write time is the one
    verification recomputes."""
    result: dict[str, Any] = json.loads(json.dumps(details or {}, default=str))
    return result


def canonical(  # noqa: PLR0913 - the hashed fields of one record
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details: dict[str, Any],
    prev_hash: str,
) -> bytes:
    payload = {
        "v": CHAIN_VERSION,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(  # noqa: PLR0913 - the hashed fields of one record
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    return hashlib.sha256(
        canonical(seq, at, actor, action, target, outcome, details, prev_hash)
    ).hexdigest()


def verify_chain(
    records: Iterable[Any], head_seq: int | None, head_hash: str | None
) -> dict[str, Any]:
    """Check records (objects with the audit columns, in ``seq`` order) against their
    hashes, links and the head. Returns ``ok``, the number of records checked, the head,
    and for a broken chain the first bad record (``seq``, ``id``) and what is wrong."""
    expected_seq, prev = 1, GENESIS
    checked = 0
    for row in records:
        checked += 1
        problem = None
        if row.seq != expected_seq:
            problem = (
                f"records {expected_seq}..{row.seq - 1} are missing (removed)"
                if row.seq > expected_seq
                else f"record {row.seq} is out of order (reordered or duplicated)"
            )
        elif row.prev_hash != prev:
            problem = (
                "its link to the record before does not match "
                "(that one was changed, removed or reordered)"
            )
        elif row.hash != record_hash(
            row.seq,
            row.at,
            row.actor,
            row.action,
            row.target,
            row.outcome,
            row.details,
            row.prev_hash,
        ):
            problem = "its content does not match its hash (it was changed)"
        if problem is not None:
            return {
                "ok": False,
                "records": checked,
                "first_bad": {"seq": row.seq, "id": row.id, "problem": problem},
            }
        expected_seq, prev = row.seq + 1, row.hash
    last_seq = expected_seq - 1
    if (head_seq or 0) != last_seq or (head_hash or GENESIS) != prev:
        return {
            "ok": False,
            "records": checked,
            "first_bad": {
                "seq": last_seq + 1,
                "id": None,
                "problem": (
                    f"the head names record {head_seq}: records after {last_seq} were removed"
                ),
            },
        }
    return {"ok": True, "records": checked, "head": {"seq": last_seq, "hash": prev}}
