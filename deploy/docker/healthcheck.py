"""Container health check: exit 0 when the URL answers 2xx within 4 seconds, else 1.

Default URL: the decision service's /health on CREDITOPS_SERVE__PORT (8000). Other
containers built from the same image pass their own URL (the MLflow server: its /health).
Standard library only, so the image needs no curl.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("CREDITOPS_SERVE__PORT", "8000")
    url = sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - fixed local URL
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
