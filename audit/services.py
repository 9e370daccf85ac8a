from __future__ import annotations

from typing import Any

from audit.models import AuditEntry


def audit_record(
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record one action. Joins the caller's transaction: the action and its record commit together or not at all."""
    return AuditEntry.objects.create(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        reason=reason,
        details=details or {},
    )
