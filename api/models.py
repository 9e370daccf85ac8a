from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class ApiClient(models.Model):
    """A storefront that calls the API, with one or more keys (two while a rotation overlaps). Revoking the client
    stops every key it has."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(db_default=Now())
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    # DRF treats the authenticated principal as a user; an API client is always an authenticated one.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def actor(self) -> str:
        """How this client appears in audit and transition logs."""
        return f"api_client:{self.pk}"


class Scope(models.TextChoices):
    """What a key may do. Each endpoint names the one scope it needs (api/views.py)."""

    READ = "read", "read payments, orders, refunds, payouts and balances"
    WRITE = "write", "create payments and checkouts"
    REFUNDS = "refunds", "refund orders"
    PAYOUTS = "payouts", "release funds, pay sellers out, change their payout settings"


class ApiKey(models.Model):
    """One key of a client. The key is shown once when issued; we keep only its hash and a visible prefix."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    # The first characters of the key, shown in the admin and in logs so a person can tell keys apart unseen.
    prefix = models.CharField(max_length=16)
    # SHA-256 of the whole key. Keys are 192 random bits, so a fast hash is enough: there is nothing to brute-force.
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices))
    created_at = models.DateTimeField(db_default=Now())
    # Set when the key is rotated: the old key keeps working until then, so storefronts can deploy the new one.
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scopes__contained_by=Scope.values) & ~models.Q(scopes=[]),
                name="api_key_scopes_known",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}…"

    def usable(self) -> bool:
        """Neither the key nor its client revoked, and not past the end of a rotation's overlap."""
        if self.revoked_at is not None or self.client.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


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
