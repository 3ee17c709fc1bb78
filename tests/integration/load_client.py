"""A load generator in its own process, for switch-under-load tests.

    python -m tests.integration.load_client BASE_URL OUT.json --threads 4 --seconds 35

Each thread posts single applications (distinct application ids) to the taiwan predict
route in a closed loop until ``--seconds`` pass or ``--max-requests`` per thread are sent;
then the process writes what it saw to OUT.json: the count per HTTP status, transport
errors (dropped or refused connections), and for every acknowledged decision its id and the
version that answered it, with the time of the answer.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

FEATURES = {
    "limit_bal": 200000, "sex": 2, "education": 2, "marriage": 1, "age": 35,
    "pay_0": 0, "pay_2": 0, "pay_3": 0, "pay_4": 0, "pay_5": 0, "pay_6": 0,
    "bill_amt1": 20000, "bill_amt2": 19000, "bill_amt3": 18000, "bill_amt4": 17000,
    "bill_amt5": 16000, "bill_amt6": 15000, "pay_amt1": 2000, "pay_amt2": 2000,
    "pay_amt3": 2000, "pay_amt4": 2000, "pay_amt5": 2000, "pay_amt6": 2000,
}  # fmt: skip


def run(base_url: str, threads: int, seconds: float, max_requests: int) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    transport: list[str] = []
    acknowledged: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def worker(tag: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for n in range(max_requests):
                if time.monotonic() > deadline:
                    return
                body = {"application_id": f"load-{tag}-{n}", "features": FEATURES}
                try:
                    answer = client.post("/v1/models/taiwan/predict", json=body)
                except httpx.TransportError as exc:
                    with lock:
                        transport.append(repr(exc))
                    continue
                with lock:
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        data = answer.json()
                        acknowledged.append(
                            (
                                data["decision_id"],
                                data["model"]["version"],
                                time.monotonic() - start,
                            )
                        )

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {
        "statuses": {str(k): v for k, v in statuses.items()},
        "transport_errors": transport[:20],
        "transport_error_count": len(transport),
        "acknowledged": acknowledged,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=35.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    args = parser.parse_args()
    result = run(args.base_url, args.threads, args.seconds, args.max_requests)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
