from __future__ import annotations


class LedgerError(Exception):
    """A posting the ledger refuses. ``code`` is stable, like the API's error codes."""

    code = "ledger_error"


class InvalidPosting(LedgerError):
    code = "posting_invalid"


class UnbalancedPosting(LedgerError):
    code = "posting_unbalanced"


class AccountMismatch(LedgerError):
    """An account code already exists with another type or currency."""

    code = "account_mismatch"


class PostingConflict(LedgerError):
    """(kind, reference) names an event already posted with other entries."""

    code = "posting_conflict"
