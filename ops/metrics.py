"""Our event metrics: things that happen, counted where they happen (the PSP call, the retry).

In a deployment several processes count (gunicorn workers, Celery workers, their threads): with
``PROMETHEUS_MULTIPROC_DIR`` set in every process's environment before it starts (prometheus_client reads it at
import), each process writes its values to files in that directory and /metrics adds them up, so no count depends on
which process a scrape reaches (ops/scrape.py). Counters and histograms only: a gauge of one process is meaningless
once summed, which is why every state we show (statuses, open dead letters, overdue orders, webhook lag) is computed
from the database at scrape time instead.

Only prometheus_client here, no Django and no app imports: the services that count import this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# From a fast sandbox answer to the client's timeout (STRIPE_TIMEOUT_SECONDS, 10 s by default) and past it.
PSP_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

psp_call_seconds = Histogram(
    "marketpay_psp_call_duration_seconds",
    "PSP calls by operation (charge, lookup, refund, transfer, ...) and outcome (succeeded, failed, pending, "
    "not_found, transient, unknown, configuration, error), with their duration.",
    ["psp", "operation", "outcome"],
    buckets=PSP_LATENCY_BUCKETS,
)

retries_total = Counter(
    "marketpay_retries_total",
    "Retries scheduled after a transient failure, by task (PSP calls) or payments.webhook_event (webhook events).",
    ["task"],
)

security_events_total = Counter(
    "marketpay_security_events_total",
    "Security events by kind (auth_failed, throttled, card_data_refused, ...): every one, including those the "
    "audit.SecurityEvent table only samples.",
    ["kind"],
)
