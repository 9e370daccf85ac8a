"""Masking of what must never be written out, for log lines: card numbers (api/carddata.py) and secrets."""

from __future__ import annotations

import re

from api.carddata import mask_card_numbers

SECRET_REMOVED = "[secret removed]"  # noqa: S105 - what replaces a secret, not one

# Credentials that have a recognisable shape: Stripe secret and restricted keys, webhook signing secrets, our own
# API keys (api/services.py), a bearer token quoted from a header, and the password in a URL
# (postgres://user:password@host). The prefix stays, so a reader still sees which kind of secret was there.
_SECRETS = re.compile(
    r"(?P<prefix>\b(?:sk|rk)_(?:test|live)_|\bwhsec_|\bmpk_|\b[Bb]earer\s+|://[^\s:/@]*:)"
    r"(?P<secret>[^\s@\"',;]{4,})(?P<at>@?)"
)


def _mask_match(match: re.Match[str]) -> str:
    if match.group("prefix").startswith("://") and not match.group("at"):
        return match.group(0)  # scheme://host:port, not a password
    return f"{match.group('prefix')}{SECRET_REMOVED}{match.group('at')}"


def mask_sensitive(text: str) -> str:
    return _SECRETS.sub(_mask_match, mask_card_numbers(text))
