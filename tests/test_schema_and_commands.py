from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from api.models import ApiKey
from api.services import hash_api_key
from tests.conftest import payment_body

pytestmark = pytest.mark.django_db

AUTHENTICATED = {"401", "403", "429"}


def test_the_schema_documents_every_status_code_of_every_endpoint() -> None:
    response = Client().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    documented = {
        (path, method): set(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    # Every endpoint authenticates: a missing key (401), a key without the scope (403), a throttled client (429).
    assert documented == {
        ("/v1/payments", "post"): {"201", "400", "409", "415", "422"} | AUTHENTICATED,
        ("/v1/checkouts", "post"): {"201", "400", "409", "415", "422", "502", "503"} | AUTHENTICATED,
        ("/v1/payments/{payment_id}", "get"): {"200", "404"} | AUTHENTICATED,
        ("/v1/payment-orders/{payment_order_id}", "get"): {"200", "404"} | AUTHENTICATED,
        ("/v1/sellers/{seller_account}/balance", "get"): {"200", "404"} | AUTHENTICATED,
        ("/v1/payment-orders/{payment_order_id}/release", "post"): {"200", "404", "409"} | AUTHENTICATED,
        ("/v1/payment-orders/{payment_order_id}/refunds", "post"): {"201", "400", "404", "409", "415", "422"}
        | AUTHENTICATED,
        ("/v1/refunds/{refund_id}", "get"): {"200", "404"} | AUTHENTICATED,
        ("/v1/sellers/{seller_account}", "patch"): {"200", "400", "404", "415"} | AUTHENTICATED,
        ("/v1/sellers/{seller_account}/payouts", "post"): {"201", "400", "404", "409", "415", "422"} | AUTHENTICATED,
        ("/v1/payouts/{payout_id}", "get"): {"200", "404"} | AUTHENTICATED,
    }
    create = schema["paths"]["/v1/payments"]["post"]
    assert {"name": "Idempotency-Key", "in": "header", "required": True}.items() <= next(
        p for p in create["parameters"] if p["name"] == "Idempotency-Key"
    ).items()
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    error = schema["components"]["schemas"]["ErrorDetail"]["properties"]
    assert set(error) == {"code", "message", "field"}


def test_the_docs_page_is_served_without_external_assets() -> None:
    response = Client().get("/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr" not in page


def test_create_api_client_prints_a_working_key_once_and_stores_only_its_hash() -> None:
    # when
    out = StringIO()
    call_command("create_api_client", "north-shop", stdout=out)

    # then
    key = out.getvalue().strip().splitlines()[-1]
    stored = ApiKey.objects.get(client__name="north-shop")
    assert key.startswith("mpk_")
    assert stored.key_hash == hash_api_key(key)
    assert key not in {stored.key_hash, stored.prefix}
    assert key.startswith(stored.prefix)
    assert stored.scopes == ["read", "write", "refunds", "payouts"]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    created = api.post(
        "/v1/payments", data=payment_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="cmd-key"
    )
    assert created.status_code == 201


def test_create_api_client_refuses_a_duplicate_name() -> None:
    call_command("create_api_client", "dup-shop", stdout=StringIO())
    with pytest.raises(Exception, match="already exists"):
        call_command("create_api_client", "dup-shop", stdout=StringIO())


def test_an_unknown_api_path_answers_in_the_error_shape() -> None:
    response = Client().get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
