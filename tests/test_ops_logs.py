"""Structured logs: a request id that follows one payment from the API, through the relay and the Celery worker, to the
PSP and back in its answer; the payment's ids on every line about it; no card number or secret on any line.

The worker runs in this process (``celery_worker_app``) and the sandbox PSP in its own, whose output we read. Lines
are captured by a handler of our own on the root logger, configured as settings.LOGGING configures the console's.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.carddata import contains_card_number, log_holds_card_number
from api.logfilters import SensitiveDataFilter
from ops import context
from ops.logs import ContextFilter, JsonFormatter, PlainFormatter
from payments.models import OrderStatus, PaymentOrder
from tests.conftest import order, payment_body, wait_until
from tests.sandbox import Sandbox

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def logged() -> Iterator[Lines]:
    """The JSON lines every logger writes while the test runs, through the same filters and formatter as production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(SensitiveDataFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # gunicorn's own start-up lines are plain text
    return lines


def test_a_sane_request_id_is_kept_and_returned(client: Any) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="storefront-7f3a:checkout.42")

    assert response["X-Request-ID"] == "storefront-7f3a:checkout.42"


@pytest.mark.parametrize(
    "offered",
    [None, "", "has spaces", "x" * 129, 'quote"d', "4242424242424242", "-starts-with-a-dash", "ünïcode"],
)
def test_a_missing_or_insane_request_id_is_replaced_by_a_new_one(client: Any, offered: str | None) -> None:
    headers = {} if offered is None else {"HTTP_X_REQUEST_ID": offered}

    first = client.get("/healthz", **headers)["X-Request-ID"]
    second = client.get("/healthz", **headers)["X-Request-ID"]

    assert first != offered
    assert context.sane_request_id(first)
    assert first != second
    assert not contains_card_number(first)


@pytest.mark.django_db(transaction=True)
def test_one_payment_is_followed_by_its_request_id_through_web_worker_and_psp(
    sandbox: Sandbox,
    settings: Any,
    celery_worker_app: Any,
    api: Any,
    logged: Lines,
) -> None:
    settings.STRIPE_API_BASE = sandbox.url
    request_id = "trace-one-payment-1"

    # when a payment is created with a request id, and executed by the worker at the PSP
    body = payment_body(payment_orders=[order()])
    response = api.post(
        "/v1/payments",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="idem-trace-one-payment",
        HTTP_X_REQUEST_ID=request_id,
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == request_id
    payment_id = response.json()["payment_id"]
    order_id = body["payment_orders"][0]["payment_order_id"]
    wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS)
    ours = [line for line in logged() if line.get("request_id") == request_id]

    # then the web process logged the payment under that id
    created = [line for line in ours if line["logger"] == "payments.services"]
    assert [(line["payment_id"], line["payment_order_ids"]) for line in created] == [(payment_id, [order_id])]
    # and the worker's executor ran under it, naming the payment and the order, and called the PSP with it
    psp_calls = [
        line
        for line in ours
        if line["logger"] == "payments.psp.stripe" and line.get("celery_task") == "payments.order_execute"
    ]
    assert psp_calls, "no PSP call logged under the payment's request id"
    assert {(line["payment_id"], line["payment_order_id"]) for line in psp_calls} == {(payment_id, order_id)}
    psp_request_ids = {line["psp_request_id"] for line in psp_calls}
    assert all(psp_id.startswith("req_") for psp_id in psp_request_ids)
    # and the PSP logged the same calls with our id beside its own
    at_psp = [line for line in json_lines(sandbox.output()) if line.get("request_id") == request_id]
    assert {line["psp_request_id"] for line in at_psp} == psp_request_ids
    # and no other payment's lines carry it
    assert all(line.get("payment_order_id") in (None, order_id) for line in ours)
    # and nothing on either side looks like a card number
    assert not any(log_holds_card_number(json.dumps(line)) for line in logged())
    assert not log_holds_card_number(sandbox.output())


@pytest.mark.django_db
def test_no_log_line_holds_a_card_number_or_a_secret(api: Any, logged: Lines) -> None:
    # when a card number is typed into a URL and a header, and a card number and a key reach a log call's every part
    api.get("/v1/payments/4242424242424242", HTTP_X_REQUEST_ID="4000056655665556")
    api.get("/v1/payments/4242-4242-4242-4242?token=sk_live_abcdefgh12345678")
    log = logging.getLogger("tests.ops")
    try:
        raise ValueError("declined 5555 5555 5555 4444 with sk_test_abcdefgh12345678")
    except ValueError:
        log.exception(
            "card %s key %s",
            "4111111111111111",
            "whsec_abcdefgh12345678",
            extra={"card": "378282246310005", "cards": ["6011111111111117"], "url": "postgres://u:pw12345@db/x"},
        )

    # then every line was written, and none holds a card number or one of those secrets
    text = "\n".join(json.dumps(line) for line in logged())
    assert "Not Found" in text
    assert "[card number removed]" in text
    assert "[secret removed]" in text
    assert not any(log_holds_card_number(line) for line in text.splitlines())
    for secret in ("abcdefgh12345678", "pw12345"):
        assert secret not in text


def test_the_plain_format_shows_the_context_after_the_message() -> None:
    record = logging.LogRecord("payments", logging.INFO, __file__, 1, "charged", (), None)
    with context.bound(request_id="r-1", payment_order_id="po_1"):
        ContextFilter().filter(record)

    line = PlainFormatter().format(record)

    assert line.endswith("INFO payments charged [request_id=r-1 payment_order_id=po_1]")


def test_every_handler_masks_and_carries_the_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.config import Config

    from api.logfilters import MaskingGunicornLogger

    # settings.LOGGING's handlers (pytest's own capture handlers aside)
    ours = [h for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]
    assert ours
    for handler in ours:
        assert {type(f) for f in handler.filters} >= {ContextFilter, SensitiveDataFilter}
    # and gunicorn's access and error logs, in JSON, with the masking on
    monkeypatch.setenv("LOG_FORMAT", "json")
    config = Config()
    config.set("accesslog", "-")
    gunicorn_logger = MaskingGunicornLogger(config)
    stream = io.StringIO()
    for log in (gunicorn_logger.access_log, gunicorn_logger.error_log):
        assert log.handlers
        for handler in log.handlers:
            assert isinstance(handler.formatter, JsonFormatter)
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(stream)
    with context.bound(request_id="r-gunicorn"):
        gunicorn_logger.access_log.info('"GET /v1/payments/4242424242424242 HTTP/1.1" 404')

    line = json.loads(stream.getvalue())
    assert line["request_id"] == "r-gunicorn"
    assert line["message"] == '"GET /v1/payments/[card number removed] HTTP/1.1" 404'
