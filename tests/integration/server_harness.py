"""Helpers to run the real decision service (``creditops serve``) in a subprocess.

The server runs on 127.0.0.1 on a free port, in its own session (so it leads a process
group that can be killed as a whole, uvicorn workers included), with an environment that
holds only the ``CREDITOPS_*`` settings a test passes. Its stdout and stderr go to a log
file the tests can search. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from creditops.store.engine import normalize_database_url

HOST = "127.0.0.1"
PG_URL = os.environ.get(
    "CREDITOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
READY_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 120.0


# -- environment and the CLI ----------------------------------------------------------------
def creditops_command() -> list[str]:
    """The ``creditops`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("creditops")
    if script.exists():
        return [str(script)]
    found = shutil.which("creditops")
    return [found] if found else [sys.executable, "-m", "creditops.cli"]


def service_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The inherited environment minus any creditops/prometheus settings, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CREDITOPS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        CREDITOPS_HOME=str(home),
        CREDITOPS_DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], env: dict[str, str], *, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``creditops <args>``; with ``check`` a non-zero exit fails with its output."""
    done = subprocess.run(
        [*creditops_command(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"creditops {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


@dataclass(frozen=True)
class ApiKey:
    key: str
    key_id: str
    scopes: tuple[str, ...]


def create_key(env: dict[str, str], cwd: Path, name: str, scopes: Sequence[str]) -> ApiKey:
    """``creditops keys create --json`` and the key it printed."""
    done = run_cli(
        ["keys", "create", "--name", name, "--scopes", ",".join(scopes), "--json"], env, cwd=cwd
    )
    payload = json.loads(done.stdout)
    return ApiKey(key=payload["key"], key_id=payload["id"], scopes=tuple(payload["scopes"]))


def revoke_key(env: dict[str, str], cwd: Path, key_id: str) -> None:
    run_cli(["keys", "revoke", "--id", key_id], env, cwd=cwd)


# -- PostgreSQL schemas ---------------------------------------------------------------------
def _pg_admin_conninfo() -> str:
    url = normalize_database_url(PG_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_schema(prefix: str = "creditops_api") -> Iterator[str]:
    """A fresh PostgreSQL schema; yields a database URL whose search_path is that schema.

    The schema is dropped afterwards. If PostgreSQL is unreachable this raises (the tests
    treat PostgreSQL as part of the contract, like ``test_store.py``).
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- the server -----------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``creditops serve``; ``proc.pid`` is also its process group id."""

    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, key: str | None = None, *, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll ``GET /ready`` until it answers 200; fail with the log if the server died."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"creditops serve exited with {self.proc.returncode} before it was ready; "
                    f"log:\n{self.log_text()[-4000:]}"
                )
            try:
                response = httpx.get(f"{self.base_url}/ready", timeout=2.0)
                if response.status_code == 200:
                    ready: dict[str, Any] = response.json()
                    return ready
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"server not ready after {timeout:.0f}s ({last}); log:\n{self.log_text()[-4000:]}"
        )

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a reused id of someone else's group
            return False
        return True

    def kill_group(self) -> None:
        """SIGKILL the whole process group (uvicorn supervisor and every worker)."""
        with suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def kill_main(self) -> None:
        """SIGKILL only the ``creditops serve`` process (with one worker: uvicorn itself)."""
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait_group_gone(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.group_alive():
                return True
            time.sleep(0.05)
        return not self.group_alive()

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGTERM to the group); SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        # Stragglers (e.g. workers of a supervisor that was killed) go too.
        if self.group_alive():
            with suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            self.wait_group_gone()
        return self.proc.returncode


def start_server(
    home: Path,
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    attempts: int = 3,
) -> ServerProcess:
    """Start ``creditops serve`` on a free loopback port and wait until it is ready.

    The port is chosen just before the start, so another process may grab it first: the
    start is retried on a fresh port when the log says the address was in use.
    """
    env = service_env(home, database_url, **(extra_env or {}))
    for attempt in range(1, attempts + 1):
        port = free_port()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    *creditops_command(),
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                env=env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = ServerProcess(proc, port, workers, log_path, env)
        try:
            server.wait_ready()
        except RuntimeError:
            server.stop()
            if attempt < attempts and "address already in use" in server.log_text().lower():
                continue
            raise
        return server
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def running_server(
    home: Path,
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    server = start_server(home, database_url, log_path, workers=workers, extra_env=extra_env)
    try:
        yield server
    finally:
        server.stop()


# -- load -----------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """What the clients saw: every acknowledged decision and every status / error."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # decision_id -> application_id
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    bad_bodies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def _load_worker(
    base_url: str,
    key: str,
    path: str,
    make_body: Callable[[str], dict[str, Any]],
    prefix: str,
    stop: threading.Event,
    deadline: float,
    max_requests: int,
    result: LoadResult,
) -> None:
    sent = 0
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
    ) as client:
        while not stop.is_set() and sent < max_requests and time.monotonic() < deadline:
            application_id = f"{prefix}-{sent}"
            sent += 1
            try:
                response = client.post(path, json=make_body(application_id))
            except httpx.TransportError:
                with result.lock:
                    result.transport_errors += 1
                if stop.is_set():
                    return
                time.sleep(0.01)
                continue
            with result.lock:
                result.statuses[response.status_code] += 1
            if response.status_code != 200:
                continue
            try:
                body = response.json()
                decision_id = str(body["decision_id"])
            except (ValueError, KeyError):
                with result.lock:
                    result.bad_bodies.append(response.text[:200])
                continue
            with result.lock:
                result.acknowledged[decision_id] = str(body["application_id"])


@dataclass
class LoadRun:
    """Client threads posting single applications until stopped, timed out or done."""

    threads: list[threading.Thread]
    stop_event: threading.Event
    result: LoadResult

    def acknowledged_count(self) -> int:
        with self.result.lock:
            return len(self.result.acknowledged)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"load threads did not finish: {alive}")


def start_load(
    server: ServerProcess,
    key: str,
    make_body: Callable[[str], dict[str, Any]],
    *,
    path: str,
    threads: int,
    duration_s: float,
    max_requests_per_thread: int,
    tag: str,
) -> LoadRun:
    """Start ``threads`` clients; each posts ``make_body(application_id)`` to ``path``.

    Bounded in time (``duration_s``) and count (``max_requests_per_thread``).
    """
    stop = threading.Event()
    result = LoadResult()
    deadline = time.monotonic() + duration_s
    workers = [
        threading.Thread(
            target=_load_worker,
            args=(
                server.base_url,
                key,
                path,
                make_body,
                f"{tag}-{i}",
                stop,
                deadline,
                max_requests_per_thread,
                result,
            ),
            name=f"load-{tag}-{i}",
            daemon=True,
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    return LoadRun(workers, stop, result)
