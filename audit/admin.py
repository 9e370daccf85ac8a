"""The audit trail in the finance console: read-only for everyone, and shown on the objects it is about."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from api.readonly_admin import ReadOnlyAdmin
from audit.models import AuditEntry, SecurityEvent
from audit.selectors import audit_entries_for


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_id", "reason"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id__exact", "actor__exact"]
    date_hierarchy = "created_at"


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    """Failed authentications, throttling, refused card data, forged webhooks, risk rejections: where an attack
    shows. Sampled per source and minute (the metric marketpay_security_events_total counts every one)."""

    list_display = ["created_at", "kind", "actor", "ip", "path", "detail"]
    list_filter = ["kind"]
    search_fields = ["ip__exact", "actor__exact"]
    ordering = ["-created_at"]


def audit_html(object_type: str, object_id: object) -> str:
    """An object's audit trail, oldest first, for its admin page."""
    entries = audit_entries_for(object_type=object_type, object_id=str(object_id))
    rows = format_html_join(
        "", "<li>{} · {} · {} · {}</li>", ((e.created_at, e.actor, e.action, e.reason) for e in entries)
    )
    return format_html("<ul>{}</ul>", rows) if rows else "—"
