"""Collects every transition of a PaymentOrder for its log.

django-fsm announces each successful transition with ``post_transition``; we queue a log row on the instance, and
``PaymentOrder.save`` writes the queue in the same transaction as the new status. A transition that is refused
raises before the signal, so it queues (and writes) nothing.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver
from django_fsm.signals import post_transition

from payments.models import OrderTransition, PaymentOrder


@receiver(post_transition, sender=PaymentOrder, dispatch_uid="payments.order_transition_log")
def queue_transition_log(
    sender: type[PaymentOrder],
    instance: PaymentOrder,
    name: str,
    source: str,
    target: str,
    method_kwargs: dict[str, Any],
    **kwargs: Any,
) -> None:
    instance.__dict__.setdefault("_pending_transitions", []).append(
        OrderTransition(
            order=instance,
            from_status=source,
            to_status=target,
            transition=name,
            reason=method_kwargs.get("reason", ""),
            actor=method_kwargs["actor"],
        )
    )
