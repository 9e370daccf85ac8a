"""A webhook endpoint in the test process: a small HTTP server on a free port that records every request the sandbox
sends it and answers with the statuses a test queues (200 once the queue is empty)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import stripe
from django.conf import settings


@dataclass(frozen=True)
class Received:
    body: str
    headers: dict[str, str]
    status: int
    at: float

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    def verified(self, secret: str | None = None, *, tolerance: int = 300) -> stripe.Event:
        """The event, through stripe-python's own signature check (raises SignatureVerificationError otherwise)."""
        return stripe.Webhook.construct_event(
            self.body, self.headers["Stripe-Signature"], secret or settings.STRIPE_WEBHOOK_SECRET, tolerance=tolerance
        )


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_with(self, *statuses: int) -> None:
        with self.lock:
            self.statuses.extend(statuses)

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def delivered(self) -> list[Received]:
        return [item for item in self.all() if 200 <= item.status < 300]

    def event_types(self) -> list[str]:
        return [item.event["type"] for item in self.delivered()]

    def of_object(self, object_id: str) -> list[Received]:
        return [item for item in self.delivered() if item.event["data"]["object"]["id"] == object_id]

    def wait_for(self, condition: Callable[[Receiver], bool], *, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"webhooks not received within {timeout} s; got {self.event_types()}")
            time.sleep(0.02)


@contextmanager
def receiving_webhooks() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sandbox's pooled sender expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            with receiver.lock:
                status = receiver.statuses.popleft() if receiver.statuses else 200
                receiver.received.append(Received(body, dict(self.headers.items()), status, time.monotonic()))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    # A short poll interval: shutdown() waits for the loop to notice, up to one interval.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
