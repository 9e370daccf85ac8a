"""pytest fixtures that run the sandbox PSP as a real process, the way production code meets Stripe: over HTTP.

tests/conftest.py makes the fixture available everywhere. Mark the tests that use it
``@pytest.mark.django_db(transaction=True)``: the sandbox process has its own database connections, so it only sees
rows the test committed, and the test only sees the sandbox's rows once the sandbox committed them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import stripe
from django.conf import settings
from django.db import connection

from payments.psp.stripe import StripeGateway, stripe_client

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Sandbox:
    url: str
    api_key: str
    client: stripe.StripeClient
    process: subprocess.Popen[bytes]
    log: Any  # the file its output goes to

    def client_with(self, api_key: str) -> stripe.StripeClient:
        """Another client on the same sandbox, say with a wrong key."""
        return make_client(self.url, api_key)

    def output(self) -> str:
        """Everything the sandbox process has written so far (its log lines among it)."""
        # pread, not seek and read: the process writes at the offset it shares with this file object.
        descriptor = self.log.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")


def make_client(url: str, api_key: str) -> stripe.StripeClient:
    # The library's own retries off, as in the project's adapter: a test sees every answer the sandbox gives.
    return stripe.StripeClient(api_key, base_addresses={"api": url}, max_network_retries=0)


def database_url(settings_dict: dict[str, Any]) -> str:
    """DATABASE_URL of the database Django's connection uses now: the test database, once pytest-django made it."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{quote(settings_dict['NAME'], safe='')}"


@contextmanager
def running_sandbox(
    *, database: str, workers: int = 2, threads: int = 8, env: dict[str, str] | None = None
) -> Iterator[Sandbox]:
    """Start ``gunicorn psp_sandbox.wsgi:application`` on a free port, wait until it answers, stop it afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "psp_sandbox.settings",
        "DATABASE_URL": database,
        "SECRET_KEY": settings.SECRET_KEY,
        "REDIS_URL": settings.REDIS_URL,
        "STRIPE_API_KEY": settings.STRIPE_API_KEY,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        # Read the config row on every use: a test that changes it through /v1/sandbox/config sees the change in the
        # very next call, whichever worker serves it.
        "SANDBOX_CONFIG_CACHE_SECONDS": "0",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "psp_sandbox.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        # Threads, so that concurrent requests really run concurrently and the idempotency lock is put to work.
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
    ]
    # The process's own output (gunicorn's lines, anything printed) is kept for the card-data scan when it runs.
    scan_dir = os.environ.get("CARD_SCAN_DIR")
    log_file = (
        tempfile.NamedTemporaryFile(dir=scan_dir, prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115
        if scan_dir
        else tempfile.TemporaryFile()  # noqa: SIM115 - either file is closed by the block below
    )
    with log_file as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=Path(settings.BASE_DIR), env=child_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_answering(url, process, log)
            yield Sandbox(
                url=url,
                api_key=settings.STRIPE_API_KEY,
                client=make_client(url, settings.STRIPE_API_KEY),
                process=process,
                log=log,
            )
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def sandbox(django_db_setup: None) -> Iterator[Sandbox]:
    """The sandbox PSP in its own process on the test database, shared by the tests of one module."""
    # django_db_setup has pointed the connection at the test database by now; the sandbox must use the same one.
    with running_sandbox(database=database_url(connection.settings_dict)) as running:
        yield running


@pytest.fixture
def gateway(sandbox: Sandbox, settings: Any) -> StripeGateway:
    """The project's Stripe adapter on the sandbox, configured the way production is: only the API base differs
    between the sandbox and real Stripe."""
    settings.STRIPE_API_BASE = sandbox.url
    return StripeGateway(stripe_client())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with {process.returncode}:\n{_tail(log)}")
        try:
            urllib.request.urlopen(f"{url}/v1/", timeout=1)  # noqa: S310 - a local http URL we built
        except urllib.error.HTTPError:
            return  # Any HTTP answer (Stripe's 404 for an unknown URL) means Django is serving.
        except OSError:
            time.sleep(0.1)
            continue
        return
    _stop(process)
    raise RuntimeError(f"the sandbox did not answer within {START_TIMEOUT_SECONDS} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGINT is gunicorn's quick shutdown: a graceful one (SIGTERM) lingers on keep-alive connections for seconds,
    # and nothing a test left behind needs finishing.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read()[-4000:].decode(errors="replace")
