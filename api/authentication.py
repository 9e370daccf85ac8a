from __future__ import annotations

import time
from typing import Any, NoReturn

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.errors import Forbidden
from api.events import client_ip, security_event_at
from api.models import ApiClient, ApiKey
from api.services import KEY_PREFIX, VISIBLE_PREFIX_LENGTH, hash_api_key
from api.throttles import throttle
from audit.models import SecurityEvent

# Every request authenticates, and the lookup was an eighth of a payment's cost. Keys are looked up at most once per
# API_KEY_CACHE_SECONDS per process, so a revoked key, or a rotated one whose overlap has ended, stops working within
# that time everywhere (the cached row carries the state it was read with).
_keys_by_hash: dict[str, tuple[float, ApiKey]] = {}
_CACHE_LIMIT = 10_000


def _usable_key(key_hash: str) -> ApiKey | None:
    now = time.monotonic()
    cached = _keys_by_hash.get(key_hash)
    key: ApiKey | None
    if cached is not None and cached[0] > now:
        key = cached[1]
    else:
        key = ApiKey.objects.select_related("client").filter(key_hash=key_hash).first()
        if key is None:
            _keys_by_hash.pop(key_hash, None)
            return None
        if len(_keys_by_hash) >= _CACHE_LIMIT:
            _keys_by_hash.clear()
        _keys_by_hash[key_hash] = (now + settings.API_KEY_CACHE_SECONDS, key)
    return key if key.usable() else None


def forget_cached_keys() -> None:
    """This process's cache only: other processes notice a revocation when their entry expires."""
    _keys_by_hash.clear()


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``. The key is looked up by its hash; the key itself is never stored.

    A refused key is a security event, and it counts against the caller's address: a flood of guessed keys is
    throttled like any other."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            self._refuse(request, "", "The Authorization header must be 'Bearer <API key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            self._refuse(request, "", "Invalid API key.")
        api_key = _usable_key(hash_api_key(key))
        if api_key is None:
            # Only a prefix of our own format is worth recording: anything else may be whatever the caller pasted.
            shown = key[:VISIBLE_PREFIX_LENGTH] if key.startswith(KEY_PREFIX) else ""
            self._refuse(request, shown, "Invalid API key.")
        return api_key.client, api_key

    def _refuse(self, request: Request, prefix: str, message: str) -> NoReturn:
        actor = f"key {prefix}…" if prefix else ""
        security_event_at(request, SecurityEvent.Kind.AUTH_FAILED, actor=actor, detail=message)
        throttle(request, {"ip": client_ip(request)}, batched=True)
        raise AuthenticationFailed(message)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def client_of(request: Request) -> ApiClient:
    """The API client behind an authenticated request (IsApiClient has already refused any other)."""
    client = request.user
    if not isinstance(client, ApiClient):
        raise AuthenticationFailed("Authentication credentials were not provided.")
    return client


class IsApiClient(BasePermission):
    """An API key, and the scope the endpoint needs for this method (``ApiView.required_scope``)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        scope = view.required_scope(request.method)
        if not api_key.allows(scope):
            detail = f"key {api_key.prefix}… lacks {scope}"
            security_event_at(request, SecurityEvent.Kind.SCOPE_DENIED, actor=api_key.client.actor, detail=detail)
            raise Forbidden(f"This API key lacks the {scope!r} scope this request needs.", code="insufficient_scope")
        return True
