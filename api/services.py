from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction

from api.models import ApiClient

KEY_PREFIX = "mpk_"


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    key: str  # shown once, never stored


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_client_create(*, name: str) -> IssuedKey:
    """Create a storefront client and its key. The caller shows the key once; only its hash is kept."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    with transaction.atomic(durable=True):
        client = ApiClient.objects.create(name=name, key_prefix=key[:12], key_hash=hash_api_key(key))
    return IssuedKey(client=client, key=key)
