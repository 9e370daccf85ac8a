from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.models import ApiClient
from api.services import hash_api_key

# Every request authenticates, and the lookup was an eighth of a payment's cost. Keys are looked up at most once per
# API_KEY_CACHE_SECONDS per process, so a revoked key stops working within that time everywhere.
_clients_by_hash: dict[str, tuple[float, ApiClient]] = {}
_CACHE_LIMIT = 10_000


def _active_client(key_hash: str) -> ApiClient | None:
    now = time.monotonic()
    cached = _clients_by_hash.get(key_hash)
    if cached is not None and cached[0] > now:
        return cached[1]
    client = ApiClient.objects.filter(key_hash=key_hash, revoked_at__isnull=True).first()
    if client is not None:
        if len(_clients_by_hash) >= _CACHE_LIMIT:
            _clients_by_hash.clear()
        _clients_by_hash[key_hash] = (now + settings.API_KEY_CACHE_SECONDS, client)
    else:
        _clients_by_hash.pop(key_hash, None)
    return client


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``. The key is looked up by its hash; the key itself is never stored."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <API key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid API key.") from None
        client = _active_client(hash_api_key(key))
        if client is None:
            raise AuthenticationFailed("Invalid API key.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def client_of(request: Request) -> ApiClient:
    """The API client behind an authenticated request (IsApiClient has already refused any other)."""
    client = request.auth
    if not isinstance(client, ApiClient):
        raise AuthenticationFailed("Authentication credentials were not provided.")
    return client


class IsApiClient(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiClient)
