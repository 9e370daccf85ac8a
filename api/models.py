from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class ApiClient(models.Model):
    """A storefront that calls the API. Its key is shown once at creation; we keep only a hash and a prefix."""

    name = models.CharField(max_length=100, unique=True)
    # The first characters of the key, shown in the admin so a person can tell keys apart without seeing one.
    key_prefix = models.CharField(max_length=16)
    # SHA-256 of the whole key. Keys are 192 random bits, so a fast hash is enough: there is nothing to brute-force.
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_default=Now())
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    # DRF treats the authenticated principal as a user; an API client is always an authenticated one.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def actor(self) -> str:
        """How this client appears in audit and transition logs."""
        return f"api_client:{self.pk}"


class IdempotencyKey(models.Model):
    """The stored outcome of one idempotent POST (Stripe's semantics; DESIGN.md "Exactly once").

    A row exists only for a request that succeeded: it is written in the same transaction as the objects the request
    created, so either both exist or neither does. A request that was refused stores nothing and may be retried.
    """

    # No index of its own: the unique (client, key) index starts with it.
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    # SHA-256 over method, path and the canonical JSON body: "same body" means the same JSON, not the same bytes.
    request_fingerprint = models.CharField(max_length=64)
    request_path = models.CharField(max_length=255)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField()  # the rendered JSON, so that a replay is byte for byte the first answer
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client")]

    def __str__(self) -> str:
        return f"{self.key} → {self.response_status}"
