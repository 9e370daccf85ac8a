from __future__ import annotations

from api.errors import Conflict


class InsufficientFunds(Conflict):
    default_code = "insufficient_funds"
    default_message = "The seller's balance does not cover this."


class WalletMappingError(Exception):
    """A wallet's buckets point at other ledger accounts than its own: data damage, for a person to look at."""
