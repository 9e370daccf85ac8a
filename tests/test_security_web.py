"""Production settings and browser-facing protections: `check --deploy` is clean with production variables, every
page carries the Content-Security-Policy and runs no inline script, and admin sign-in attempts are throttled."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db


def test_check_deploy_reports_nothing_with_production_settings() -> None:
    env = {
        **os.environ,
        "DEBUG": "false",
        "HTTPS_ONLY": "true",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "pay.example.com",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


@pytest.mark.parametrize("path", ["/admin/login/", "/v1/docs/", "/storefront/"])
def test_pages_carry_the_policy_and_run_no_inline_script(path: str) -> None:
    response = Client().get(path, follow=True)

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    page = response.content.decode()
    inline = [tag for tag in re.findall(r"<script\b[^>]*>", page) if "src=" not in tag]
    assert inline == [], inline


def test_admin_sign_in_is_refused_after_repeated_failures() -> None:
    cache.clear()
    User.objects.create_user("fin", password="the-right-password-123", is_staff=True)
    client = Client()

    failures = [
        client.post("/admin/login/", {"username": "fin", "password": f"guess-{n}"}).status_code
        for n in range(settings.ADMIN_LOGIN_MAX_FAILURES)
    ]
    refused = client.post("/admin/login/", {"username": "fin", "password": "the-right-password-123"})
    other_user = client.post("/admin/login/", {"username": "someone", "password": "x"})

    assert failures == [200] * settings.ADMIN_LOGIN_MAX_FAILURES  # the form again, with its error
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(settings.ADMIN_LOGIN_WINDOW_SECONDS)
    assert other_user.status_code == 200
    cache.clear()
    signed_in = client.post("/admin/login/", {"username": "fin", "password": "the-right-password-123"})
    assert signed_in.status_code == 302


def test_a_card_number_typed_into_a_console_form_is_refused_and_nothing_is_saved() -> None:
    from wallets.models import Seller

    Seller.objects.create(account="seller_cc", display_name="Before")
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(admin_user)
    seller = Seller.objects.get(account="seller_cc")

    answer = client.post(
        f"/admin/wallets/seller/{seller.pk}/change/",
        {"display_name": "Ann 4111 1111 1111 1111", "payout_account": "", "payout_currency": ""},
    )

    assert answer.status_code == 400
    assert b"4111" not in answer.content
    seller.refresh_from_db()
    assert seller.display_name == "Before"
