from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class AuditEntry(models.Model):
    """Who did what to which object, when and why: every console action that changes money or state (DESIGN.md
    "Security": "every financial action is audited"). Append-only: PostgreSQL refuses UPDATE, DELETE and TRUNCATE
    (migration 0002), so the trail cannot be edited by the people it records."""

    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=255)
    reason = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id", "created_at"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_type} {self.object_id}"


class SecurityEvent(models.Model):
    """Something an attacker would do: a failed authentication, a throttled client, a refused card number, a forged
    webhook, a risk rejection (DESIGN.md "Security"). Append-only like the audit trail. A flood from one source is
    sampled (audit/services.py), so recording an attack cannot become the attack; the metric
    ``marketpay_security_events_total`` counts every one."""

    class Kind(models.TextChoices):
        AUTH_FAILED = "auth_failed", "API authentication failed"
        SCOPE_DENIED = "scope_denied", "API key lacks the scope"
        THROTTLED = "throttled", "API throttled"
        CARD_DATA_REFUSED = "card_data_refused", "card number refused"
        WEBHOOK_SIGNATURE_INVALID = "webhook_signature_invalid", "webhook signature invalid"
        ADMIN_LOGIN_FAILED = "admin_login_failed", "admin sign-in failed"
        ADMIN_LOGIN_THROTTLED = "admin_login_throttled", "admin sign-in throttled"
        RISK_REJECTED = "risk_rejected", "risk check rejected an order"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # Who it was, as far as we know: an API client, an admin user name, a buyer, "anonymous".
    actor = models.CharField(max_length=150, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=255, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="security_event_time_idx"),
            models.Index(fields=["kind", "created_at"], name="security_event_kind_idx"),
            models.Index(fields=["ip", "created_at"], name="security_event_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.actor or self.ip}"
