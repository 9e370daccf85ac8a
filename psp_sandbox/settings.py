"""Settings of the sandbox PSP's own process: the project's settings, its own URLconf, and the fee it charges.

Run it with ``DJANGO_SETTINGS_MODULE=psp_sandbox.settings gunicorn psp_sandbox.wsgi:application --bind
127.0.0.1:8100``. It shares the project's database (its own tables) and accepts ``STRIPE_API_KEY`` as its secret key
(``sk_test_sandbox`` when unset), so the project's Stripe client needs no other configuration to talk to it.
"""

from __future__ import annotations

import os

from config.env import env_bool, env_decimal, env_int
from config.settings import *  # noqa: F403 - the sandbox is the project with another front door
from config.settings import BASE_DIR, STRIPE_WEBHOOK_SECRET
from psp_sandbox import knobs
from psp_sandbox.fees import DEFAULT_FEE_FIXED, DEFAULT_FEE_PERCENT

ROOT_URLCONF = "psp_sandbox.urls"
WSGI_APPLICATION = "psp_sandbox.wsgi.application"

# Stripe's API has no sessions, cookies, CSRF or admin: only what every request needs. CommonMiddleware would
# redirect POSTs to slash-less Stripe paths, so it stays out too. The caller's X-Request-ID goes into every line the
# sandbox logs for its call, as a PSP would keep it for support (ops/middleware.py).
MIDDLEWARE = ["ops.middleware.RequestIdMiddleware", "django.middleware.security.SecurityMiddleware"]

# The hosted pages' templates live in the project's templates/psp_sandbox/.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# The processing fee on every charge: SANDBOX_FEE_PERCENT % of the gross plus SANDBOX_FEE_FIXED minor units.
SANDBOX_FEE_PERCENT = env_decimal("SANDBOX_FEE_PERCENT", DEFAULT_FEE_PERCENT)
SANDBOX_FEE_FIXED = env_int("SANDBOX_FEE_FIXED", DEFAULT_FEE_FIXED)

# Webhooks are signed with the project's STRIPE_WEBHOOK_SECRET: the sandbox plays the Stripe account the project is
# configured for. A key given explicitly (as the tests do) turns the project's sandbox default off, so restore it.
STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET or "whsec_sandbox"

# Every knob of psp_sandbox/knobs.py (webhook URL, retries, processing delay, faults): environment defaults, which
# the config row's overrides (POST /v1/sandbox/config) sit on top of.
SANDBOX_DEFAULTS = knobs.from_environ(os.environ)
# How long a process trusts the config row it read (seconds); 0 reads it on every use.
SANDBOX_CONFIG_CACHE_SECONDS = float(env_decimal("SANDBOX_CONFIG_CACHE_SECONDS", "1"))
# The background loop (webhook delivery and the clock) in every gunicorn worker; off only to drive it by hand with
# ``manage.py sandbox_deliver``.
SANDBOX_BACKGROUND = env_bool("SANDBOX_BACKGROUND", True)

# The admin is installed (the project's settings) but never served here: its checks for sessions, auth and messages
# middleware would otherwise stop ``manage.py`` commands run on these settings (``sandbox_deliver``).
SILENCED_SYSTEM_CHECKS = ["admin.E402", "admin.E404", "admin.E408", "admin.E409", "admin.E410"]
