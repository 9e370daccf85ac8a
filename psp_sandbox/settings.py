"""Settings of the sandbox PSP's own process: the project's settings, its own URLconf, and the fee it charges.

Run it with ``DJANGO_SETTINGS_MODULE=psp_sandbox.settings gunicorn psp_sandbox.wsgi:application --bind
127.0.0.1:8100``. It shares the project's database (its own tables) and accepts ``STRIPE_API_KEY`` as its secret key
(``sk_test_sandbox`` when unset), so the project's Stripe client needs no other configuration to talk to it.
"""

from __future__ import annotations

from config.env import env_decimal, env_int
from config.settings import *  # noqa: F403 - the sandbox is the project with another front door
from psp_sandbox.fees import DEFAULT_FEE_FIXED, DEFAULT_FEE_PERCENT

ROOT_URLCONF = "psp_sandbox.urls"
WSGI_APPLICATION = "psp_sandbox.wsgi.application"

# Stripe's API has no sessions, cookies, CSRF or admin: only what every request needs. CommonMiddleware would
# redirect POSTs to slash-less Stripe paths, so it stays out too.
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]

# The processing fee on every charge: SANDBOX_FEE_PERCENT % of the gross plus SANDBOX_FEE_FIXED minor units.
SANDBOX_FEE_PERCENT = env_decimal("SANDBOX_FEE_PERCENT", DEFAULT_FEE_PERCENT)
SANDBOX_FEE_FIXED = env_int("SANDBOX_FEE_FIXED", DEFAULT_FEE_FIXED)
