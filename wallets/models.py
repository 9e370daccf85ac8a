from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

SELLER_ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class Seller(models.Model):
    """A marketplace seller, known by the storefront's account id (``seller_7``).

    Sellers are registered the first time a payment names them: the storefront owns its seller list, and we keep
    the row that wallets, payouts and the finance console hang off.
    """

    account = models.CharField(max_length=64, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return self.display_name or self.account
