"""Log filters: a card number that reaches a log line (typed into a URL, say) is masked before it is written."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from api.carddata import mask_card_numbers


class CardNumberFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_card_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class MaskingGunicornLogger(GunicornLogger):
    """gunicorn's logger (access and error logs), with the card-number filter on every handler."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(CardNumberFilter())
