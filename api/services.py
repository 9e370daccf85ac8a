from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from api.errors import Conflict, InvalidInput
from api.models import ApiClient, ApiKey, Scope
from audit.services import audit_record

KEY_PREFIX = "mpk_"
VISIBLE_PREFIX_LENGTH = 12


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    api_key: ApiKey
    key: str  # shown once, never stored


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _scopes(scopes: Iterable[str] | None) -> list[str]:
    """Known scopes, each once, in a stable order. None: every scope (a storefront that does everything)."""
    wanted = set(Scope.values if scopes is None else scopes)
    unknown = wanted - set(Scope.values)
    if unknown or not wanted:
        got = ", ".join(sorted(wanted)) or "none"
        raise InvalidInput(
            f"Scopes must be a non-empty subset of {', '.join(Scope.values)}; got {got}.",
            code="unknown_scope",
            field="scopes",
        )
    return [scope for scope in Scope.values if scope in wanted]


def _issue(client: ApiClient, scopes: list[str]) -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    api_key = ApiKey.objects.create(
        client=client, prefix=key[:VISIBLE_PREFIX_LENGTH], key_hash=hash_api_key(key), scopes=scopes
    )
    return IssuedKey(client=client, api_key=api_key, key=key)


def api_client_create(*, name: str, scopes: Iterable[str] | None = None) -> IssuedKey:
    """Create a storefront client and its first key. The caller shows the key once; only its hash is kept."""
    granted = _scopes(scopes)
    with transaction.atomic(durable=True):
        client = ApiClient.objects.create(name=name)
        return _issue(client, granted)


def api_key_issue(*, client: ApiClient, scopes: Iterable[str] | None, actor: str, reason: str = "") -> IssuedKey:
    """An extra key for a client (another system of the same storefront, with narrower scopes)."""
    granted = _scopes(scopes)
    with transaction.atomic(durable=True):
        issued = _issue(client, granted)
        audit_record(
            actor=actor,
            action="api_key_issue",
            object_type="api.apiclient",
            object_id=str(client.pk),
            reason=reason,
            details={"prefix": issued.api_key.prefix, "scopes": granted},
        )
    return issued


def api_key_rotate(*, key_id: int, overlap: timedelta, actor: str, reason: str = "") -> IssuedKey:
    """Replace a key by a new one with the same scopes. The old key keeps working for ``overlap`` (zero: not at
    all), so the storefront can deploy the new key before the old one stops."""
    if overlap < timedelta(0):
        raise InvalidInput("The overlap cannot be negative.", code="field_invalid", field="overlap")
    with transaction.atomic(durable=True):
        # Locked: two rotations of one key at once would leave two successors, both live.
        old = ApiKey.objects.select_for_update().select_related("client").get(pk=key_id)
        if old.replaced_by_id is not None or not old.usable():
            raise Conflict(
                f"Key {old.prefix}… is no longer usable, so there is nothing to rotate.", code="key_unusable"
            )
        issued = _issue(old.client, list(old.scopes))
        ends = timezone.now() + overlap
        ApiKey.objects.filter(pk=old.pk).update(replaced_by=issued.api_key, expires_at=ends)
        audit_record(
            actor=actor,
            action="api_key_rotate",
            object_type="api.apiclient",
            object_id=str(old.client_id),
            reason=reason,
            details={"old": old.prefix, "new": issued.api_key.prefix, "old_key_ends": ends.isoformat()},
        )
    return issued


def api_key_revoke(*, key_id: int, actor: str, reason: str = "") -> ApiKey:
    """Stop a key now (a leaked key). Every web process notices within API_KEY_CACHE_SECONDS."""
    with transaction.atomic(durable=True):
        key = ApiKey.objects.select_for_update().get(pk=key_id)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="api_key_revoke",
                object_type="api.apiclient",
                object_id=str(key.client_id),
                reason=reason,
                details={"prefix": key.prefix},
            )
    return key
