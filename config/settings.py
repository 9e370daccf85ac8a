"""The project's only settings module: every value comes from an environment variable with a safe default.

README.md, "Configuration", lists every variable. Integrations switch on by presence of their variables
(``STRIPE_API_KEY`` set: real Stripe; unset: the local sandbox PSP).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    check_currencies,
    check_fees,
    check_networks,
    check_stripe,
    env_bool,
    env_decimal,
    env_decimal_map,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-debug"  # noqa: S105 - refused above outside DEBUG
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "djmoney",
    "djmoney.contrib.exchange",
    "api",
    "ledger",
    "wallets",
    "payments",
    "reconciliation",
    "audit",
    "console",
    "psp_sandbox",
    "storefront",
    "ops",
]

# The request id first, so that every line logged during a request carries it (ops/middleware.py); django-prometheus'
# pair around everything else counts and times each request (its per-request cost is a few in-memory or mmap'd
# counter updates, no I/O).
MIDDLEWARE = [
    "ops.middleware.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ops.security.ContentSecurityPolicyMiddleware",
    "ops.security.AdminLoginThrottleMiddleware",
    "ops.security.AdminCardDataGuardMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# --- HTTPS in production ------------------------------------------------------------------------------------------
# HTTPS_ONLY=true behind TLS (what `manage.py check --deploy` expects): redirect http to https, HSTS, secure cookies.
# Health and metrics stay reachable over plain http for the load balancer and the scraper on the private network.
HTTPS_ONLY = env_bool("HTTPS_ONLY", False)
SECURE_SSL_REDIRECT = HTTPS_ONLY
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000) if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS_ONLY)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS_ONLY
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Admin sign-in: after this many failures for one address and user name within the window, further attempts are
# refused (429) until the window has passed.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5)
ADMIN_LOGIN_WINDOW_SECONDS = env_int("ADMIN_LOGIN_WINDOW_SECONDS", 900)
# Behind a proxy that terminates TLS and says so in X-Forwarded-Proto (and strips it from clients).
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------------------
# Each service opens its own transaction (STYLE.md "Transactions belong to services"), so no ATOMIC_REQUESTS.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketpay"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL: the ledger's invariants live in its triggers")
# Django's PostgreSQL backend with django-prometheus' counters: connections, statements, errors, query durations.
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "marketpay"),
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Tasks acknowledge after they finish and are handed back if their worker dies: every task must be safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after every task unless this is set: a new
# PostgreSQL connection per task cost more than most tasks' work. With it, the fixup closes a thread's connections
# only every 2 * N tasks, and config/celery.py keeps them as a web request does (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90)
# Redis re-delivers an unacknowledged message after this long; it must exceed any countdown a task is given.
# A broker that is down must not hold an API request for seconds while kombu retries the connection (its default
# is about six): publishing gives up after one quick retry, the payment is stored anyway, and the recovery sweep
# sends it once Redis is back.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 2,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A queue per concern, so that slow housekeeping never delays a payment. The Procfile's worker serves every queue.
# CELERY_QUEUE_SUFFIX renames them all (a benchmark sharing a Redis with a running system keeps to its own queues).
CELERY_QUEUE_SUFFIX = env_str("CELERY_QUEUE_SUFFIX", "")
CELERY_TASK_DEFAULT_QUEUE = f"default{CELERY_QUEUE_SUFFIX}"
CELERY_TASK_ROUTES = {
    task: {"queue": f"{queue}{CELERY_QUEUE_SUFFIX}"}
    for task, queue in {
        "payments.order_execute": "payments",
        "payments.refund_execute": "payments",
        "payments.payout_execute": "payments",
        "payments.funds_release_due": "maintenance",
        "payments.payout_run": "maintenance",
        "payments.webhook_events_drain": "webhooks",
        "payments.recovery_sweep": "maintenance",
        "api.idempotency_keys_purge": "maintenance",
        "reconciliation.ledger_check": "maintenance",
        "ledger.days_close": "maintenance",
        "reconciliation.nightly": "maintenance",
    }.items()
}
CELERY_TIMEZONE = "UTC"

# The webhook inbox: a failed event is retried after WEBHOOK_RETRY_BASE_SECONDS, doubling up to the maximum. The
# drain flag stops a burst of deliveries from queueing a drain each; it expires by itself if a drain is lost.
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 5)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 3600)
# After this many failed attempts an event goes to the dead letter queue and is no longer retried by itself.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 10)
WEBHOOK_DRAIN_FLAG_SECONDS = env_int("WEBHOOK_DRAIN_FLAG_SECONDS", 30)

# The recovery sweep (every minute): an order NOT_STARTED, UNKNOWN or with a waiting webhook event is looked at after
# RECOVERY_STALE_SECONDS (EXECUTING after that plus the longest retry backoff); a PENDING one is looked up at the PSP
# after RECOVERY_PENDING_LOOKUP_SECONDS; an order not final ORDER_IN_FLIGHT_ALERT_SECONDS after its creation raises
# the alert.
RECOVERY_STALE_SECONDS = env_int("RECOVERY_STALE_SECONDS", 60)
RECOVERY_PENDING_LOOKUP_SECONDS = env_int("RECOVERY_PENDING_LOOKUP_SECONDS", 300)
RECOVERY_SWEEP_LOCK_SECONDS = env_int("RECOVERY_SWEEP_LOCK_SECONDS", 300)
# PSP lookups per sweep: bounded, so that a slow PSP cannot stretch a sweep past its time limit.
RECOVERY_LOOKUPS_PER_SWEEP = env_int("RECOVERY_LOOKUPS_PER_SWEEP", 100)
ORDER_IN_FLIGHT_ALERT_SECONDS = env_int("ORDER_IN_FLIGHT_ALERT_SECONDS", 1800)

# Retries of a PSP call that failed transiently (429, 5xx, no answer): exponential backoff from the base, capped, with
# full jitter, at most PSP_RETRY_MAX_ATTEMPTS sends per order and PSP_RETRY_MAX_SECONDS from the first failure; then
# the dead letter queue. The cap stays below the broker's visibility timeout.
PSP_RETRY_MAX_ATTEMPTS = env_int("PSP_RETRY_MAX_ATTEMPTS", 8)
PSP_RETRY_MAX_SECONDS = env_int("PSP_RETRY_MAX_SECONDS", 1800)
PSP_RETRY_BACKOFF_SECONDS = env_int("PSP_RETRY_BACKOFF_SECONDS", 2)
PSP_RETRY_BACKOFF_MAX_SECONDS = env_int("PSP_RETRY_BACKOFF_MAX_SECONDS", 300)
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= PSP_RETRY_BACKOFF_MAX_SECONDS:
    raise ImproperlyConfigured("PSP_RETRY_BACKOFF_MAX_SECONDS must be shorter than CELERY_VISIBILITY_TIMEOUT")

# --- Money ----------------------------------------------------------------------------------------------------------
PAYMENT_CURRENCIES = [
    code.upper() for code in env_list("PAYMENT_CURRENCIES", ["EUR", "USD", "GBP", "CHF", "JPY", "KWD"])
]
# The largest amount one payment order may carry, in major units of its currency.
MAX_ORDER_AMOUNTS = env_decimal_map(
    "MAX_ORDER_AMOUNTS",
    {"EUR": "100000", "USD": "100000", "GBP": "100000", "CHF": "100000", "JPY": "15000000", "KWD": "30000"},
)
_missing_max = sorted(set(PAYMENT_CURRENCIES) - set(MAX_ORDER_AMOUNTS))
if _missing_max:
    raise ImproperlyConfigured(f"MAX_ORDER_AMOUNTS has no maximum for {', '.join(_missing_max)}")
check_currencies(PAYMENT_CURRENCIES, {code: MAX_ORDER_AMOUNTS[code] for code in PAYMENT_CURRENCIES})
CURRENCIES = PAYMENT_CURRENCIES  # django-money: the currencies its fields and forms offer
MAX_ORDERS_PER_PAYMENT = env_int("MAX_ORDERS_PER_PAYMENT", 50)
# The platform's fee on every pay-in (wallets/fees.py): a percentage of the gross plus a fixed part in minor units.
PLATFORM_FEE_PERCENT = env_decimal("PLATFORM_FEE_PERCENT", "5")
PLATFORM_FEE_PERCENT_BY_CURRENCY = env_decimal_map("PLATFORM_FEE_PERCENT_BY_CURRENCY", {})
PLATFORM_FEE_FIXED = env_decimal_map("PLATFORM_FEE_FIXED", {})
check_fees(PAYMENT_CURRENCIES, PLATFORM_FEE_PERCENT, PLATFORM_FEE_PERCENT_BY_CURRENCY, PLATFORM_FEE_FIXED)
# --- Risk check before execution (payments/risk/) ---------------------------------------------------------------------
# "rules" (the built-in rules) or "http" (an external provider at RISK_HTTP_URL).
RISK_PROVIDER = env_str("RISK_PROVIDER", "rules")
if RISK_PROVIDER not in ("rules", "http"):
    raise ImproperlyConfigured(f"RISK_PROVIDER must be rules or http, not {RISK_PROVIDER!r}")
RISK_HTTP_URL = env_str("RISK_HTTP_URL", "")
RISK_HTTP_TOKEN = env_str("RISK_HTTP_TOKEN", "")
RISK_HTTP_TIMEOUT_SECONDS = float(env_decimal("RISK_HTTP_TIMEOUT_SECONDS", "2"))
RISK_HTTP_FALLBACK = env_str("RISK_HTTP_FALLBACK", "review")
if RISK_HTTP_FALLBACK not in ("approve", "reject", "review"):
    raise ImproperlyConfigured(f"RISK_HTTP_FALLBACK must be approve, reject or review, not {RISK_HTTP_FALLBACK!r}")
if RISK_PROVIDER == "http" and not RISK_HTTP_URL:
    raise ImproperlyConfigured("RISK_PROVIDER=http needs RISK_HTTP_URL")
# Sanctions screening of buyer and seller names: a local list, one name per line.
RISK_SANCTIONS_FILE = env_str("RISK_SANCTIONS_FILE", str(BASE_DIR / "config" / "sanctions.txt"))
RISK_SANCTIONS_FUZZY_THRESHOLD = float(env_decimal("RISK_SANCTIONS_FUZZY_THRESHOLD", "0.88"))
# Payments per buyer, payment method and buyer IP within the window; above the limit an order is rejected.
RISK_VELOCITY_WINDOW_SECONDS = env_int("RISK_VELOCITY_WINDOW_SECONDS", 600)
RISK_VELOCITY_LIMIT = env_int("RISK_VELOCITY_LIMIT", 20)
# Per currency, major units: above REVIEW an order waits for a person, above REJECT it fails.
RISK_REVIEW_AMOUNTS = env_decimal_map("RISK_REVIEW_AMOUNTS", {})
RISK_REJECT_AMOUNTS = env_decimal_map("RISK_REJECT_AMOUNTS", {})
# ISO 3166-1 alpha-2 codes of the buyer's country.
RISK_BLOCKED_COUNTRIES = env_list("RISK_BLOCKED_COUNTRIES", [])
RISK_REVIEW_COUNTRIES = env_list("RISK_REVIEW_COUNTRIES", [])

# --- Settlement reconciliation (reconciliation/runs.py) -------------------------------------------------------------
# The PSP settles a movement this many days after it (Stripe's standard: 2); a run for date D expects what our books
# recorded up to the end of D minus this. What is missing from the file but recorded within the timing window before
# that is carried to the next run (timing); anything older is missing at the PSP.
PSP_SETTLEMENT_DELAY_DAYS = env_int("PSP_SETTLEMENT_DELAY_DAYS", 2)
RECONCILIATION_TIMING_WINDOW_DAYS = env_int("RECONCILIATION_TIMING_WINDOW_DAYS", 2)
# Amount differences up to this many major units are adjusted by the run itself (reconciliation differences account);
# larger ones wait for a person.
RECONCILIATION_AUTO_ADJUST_DEFAULT = env_decimal("RECONCILIATION_AUTO_ADJUST_DEFAULT", "1")
RECONCILIATION_AUTO_ADJUST_LIMIT = env_decimal_map("RECONCILIATION_AUTO_ADJUST_LIMIT", {"JPY": "100", "KWD": "0.3"})
# The PSP's price per charge, as agreed: a percentage plus a fixed part in minor units. A charge line whose fee is not
# this is a fee difference.
PSP_FEE_PERCENT = env_decimal("PSP_FEE_PERCENT", "2.9")
PSP_FEE_FIXED = env_int("PSP_FEE_FIXED", 30)
# PostgreSQL's work_mem for a run's own transaction and the ledger check's (SET LOCAL): their joins, sorts and
# aggregates over a whole file or table then run in memory instead of spilling to disk in batches (a million-line night
# needs about 100 MB per operation; the server's default suits the many small queries of the API).
RECONCILIATION_WORK_MEM = env_str("RECONCILIATION_WORK_MEM", "128MB")
# Nightly run time (UTC) for every PSP in RECONCILIATION_PSPS, for the day before.
RECONCILIATION_PSPS = env_list("RECONCILIATION_PSPS", ["stripe"])
RECONCILIATION_HOUR = env_int("RECONCILIATION_HOUR", 3)

# The PSP whose clearing account receives pay-ins (psp_clearing:<psp>:<currency>).
PAYMENT_PSP = env_str("PAYMENT_PSP", "stripe")
# Exchange rates for payouts in a seller's own currency (wallets/fx.py): django-money's exchange framework, fed offline
# from a JSON file by `manage.py update_rates` (a relative path is taken from the repository root). The file names its
# own base currency, so django-money's BASE_CURRENCY is not used.
FX_RATES_FILE = BASE_DIR / env_str("FX_RATES_FILE", "config/fx_rates.json")
EXCHANGE_BACKEND = "wallets.fx.FileRatesBackend"
# django-money keeps each rate it looked up in the cache for this long; 0 keeps none. A payout must convert at the
# rates just loaded, in every process, and a lookup is one indexed query.
RATES_CACHE_TIMEOUT = 0

# --- Pay-out, refunds, disputes (payments/payouts.py, refunds.py, disputes.py) ----------------------------------------
# A captured order's seller funds become available when the storefront confirms delivery, or by themselves this many
# days after capture (beat checks hourly).
FUNDS_HOLD_DAYS = env_int("FUNDS_HOLD_DAYS", 14)
# No payout below this many major units of the wallet's currency (per currency, else the default); what is left waits
# for the next run.
PAYOUT_MINIMUM = env_decimal("PAYOUT_MINIMUM", "10")
PAYOUT_MINIMUM_BY_CURRENCY = env_decimal_map("PAYOUT_MINIMUM_BY_CURRENCY", {"JPY": "1000", "KWD": "5"})
# The currencies a seller may choose to be paid in (converted at the exchange rates of FX_RATES_FILE).
PAYOUT_CURRENCIES = env_list("PAYOUT_CURRENCIES", PAYMENT_CURRENCIES)
# Who bears the platform's fee when money goes back to a buyer (a refund, a lost dispute): "refunded" (the platform
# gives its fee back in proportion; the seller returns their share) or "kept" (the platform keeps its fee; the seller
# returns the whole amount).
PLATFORM_FEE_ON_REFUND = env_str("PLATFORM_FEE_ON_REFUND", "refunded")
if PLATFORM_FEE_ON_REFUND not in ("refunded", "kept"):
    raise ImproperlyConfigured(f"PLATFORM_FEE_ON_REFUND must be refunded or kept, not {PLATFORM_FEE_ON_REFUND!r}")

# --- Storefront API -------------------------------------------------------------------------------------------------
IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24)
# How long a process trusts an API key it has looked up: a revoked key stops working within this many seconds.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5)
# Throttles (api/throttles.py): requests per window, counted in Redis, per API client and per calling IP address; and
# payments per buyer, buyer IP and payment method token, the defence against card testing (many cards tried by one
# buyer or from one address, or one stolen token tried again and again). Above a limit: 429 with Retry-After.
API_THROTTLE_WINDOW_SECONDS = env_int("API_THROTTLE_WINDOW_SECONDS", 60)
API_THROTTLE_LIMITS = {
    "client": env_int("API_THROTTLE_CLIENT", 6000),
    "ip": env_int("API_THROTTLE_IP", 6000),
    "buyer": env_int("API_THROTTLE_BUYER", 20),
    "buyer_ip": env_int("API_THROTTLE_BUYER_IP", 20),
    "payment_method": env_int("API_THROTTLE_PAYMENT_METHOD", 10),
}
# How many proxies in front of the web server append to X-Forwarded-For; 0: the calling address is REMOTE_ADDR.
API_TRUSTED_PROXIES = env_int("API_TRUSTED_PROXIES", 0)
# Security events (audit.SecurityEvent) recorded per kind and source (address; IPv6 by /64) per minute, and per kind
# from all sources; the rest are only counted.
SECURITY_EVENTS_PER_SOURCE_PER_MINUTE = env_int("SECURITY_EVENTS_PER_SOURCE_PER_MINUTE", 10)
SECURITY_EVENTS_PER_KIND_PER_MINUTE = env_int("SECURITY_EVENTS_PER_KIND_PER_MINUTE", 100)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.IsApiClient"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.GuardedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Marketplace payments API",
    "DESCRIPTION": "Pay-in for a marketplace: payments split into per-seller payment orders, executed through a PSP.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "payments.models.OrderStatus",
        "PaymentStatusEnum": "payments.models.PaymentEvent.Status",
    },
    # The contract is public; the API behind it is not.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# --- PSP (Stripe, or the local sandbox that speaks Stripe's API) ----------------------------------------------------
STRIPE_SANDBOX_PORT = env_int("STRIPE_SANDBOX_PORT", 8100)
STRIPE_API_KEY = env_str("STRIPE_API_KEY", "")
STRIPE_USES_SANDBOX = STRIPE_API_KEY == ""
if STRIPE_USES_SANDBOX:
    STRIPE_API_KEY = "sk_test_sandbox"
# Unset with a real key: stripe-python's own default (api.stripe.com). Unset without one: the sandbox.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", f"http://127.0.0.1:{STRIPE_SANDBOX_PORT}" if STRIPE_USES_SANDBOX else "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "whsec_sandbox" if STRIPE_USES_SANDBOX else "")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 10)
check_stripe(
    uses_sandbox=STRIPE_USES_SANDBOX,
    webhook_secret=STRIPE_WEBHOOK_SECRET,
    tolerance_seconds=STRIPE_WEBHOOK_TOLERANCE_SECONDS,
)
# The demo storefront at /storefront/: on with the sandbox PSP, off with real Stripe (a deployment has its own).
DEMO_STOREFRONT = env_bool("DEMO_STOREFRONT", STRIPE_USES_SANDBOX)

# --- The rest of Django ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# json: one JSON object per line, for a log pipeline (the default); plain: for a person at a terminal (make run).
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
# Every handler gets both filters: the context (request id, payment ids) first, then the masking of card numbers and
# secrets, which so also covers the context and every extra field. Celery keeps this configuration too
# (ops/signals.py), and gunicorn's own logs get the same filters (api.logfilters.MaskingGunicornLogger).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "ops.logs.JsonFormatter"}, "plain": {"()": "ops.logs.PlainFormatter"}},
    "filters": {
        "context": {"()": "ops.logs.ContextFilter"},
        "sensitive": {"()": "api.logfilters.SensitiveDataFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context", "sensitive"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # stripe-python logs every request and response at INFO: two lines per PSP call, at the executor's rate. Ours,
    # one line per call with both request ids, is payments.psp.stripe's.
    "loggers": {"stripe": {"level": env_str("STRIPE_LOG_LEVEL", "WARNING")}},
}

# LOG_FILE: every line also appended to this file, with the same filters and format (make test sets it, so that the
# card-data scan reads what the run logged, in every process that shares the environment).
LOG_FILE = env_str("LOG_FILE", "")
if LOG_FILE:
    LOGGING["handlers"]["file"] = {  # type: ignore[index]
        "class": "logging.FileHandler",
        "filename": LOG_FILE,
        "encoding": "utf-8",
        "formatter": LOG_FORMAT,
        "filters": ["context", "sensitive"],
    }
    LOGGING["root"]["handlers"].append("file")  # type: ignore[index]

# --- Operations: /healthz, /readyz, /metrics (ops/) -----------------------------------------------------------------
# Each readiness check (PostgreSQL and migrations, Redis, the broker, the PSP) gives up after this long; they run at
# once, so /readyz answers within about this time whatever is down.
READINESS_TIMEOUT_SECONDS = float(env_decimal("READINESS_TIMEOUT_SECONDS", "1"))
# /metrics is not public: a request presenting METRICS_TOKEN as a bearer token, or coming from an address in
# METRICS_ALLOWED_IPS (addresses or networks), is let in. With no token set, the allow-list defaults to this machine.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [] if METRICS_TOKEN else ["127.0.0.1", "::1"])
check_networks("METRICS_ALLOWED_IPS", METRICS_ALLOWED_IPS)
# The gauges of payments, orders, refunds and payouts by status count those created in this last stretch of time,
# so that a scrape costs a range scan on an index, whatever the size of the tables; orders in flight for longer than
# ORDER_IN_FLIGHT_ALERT_SECONDS are counted apart, whatever their age.
METRICS_WINDOW_SECONDS = env_int("METRICS_WINDOW_SECONDS", 3600)
# The database's work for one scrape is cut off after this long (a statement_timeout), then reported as failed.
METRICS_QUERY_TIMEOUT_MS = env_int("METRICS_QUERY_TIMEOUT_MS", 2000)
