from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEntry


def audit_entries_for(*, object_type: str, object_id: str) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("created_at", "pk")
