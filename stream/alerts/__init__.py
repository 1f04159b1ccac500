"""Alerts leaving the stream: routed and grouped by :mod:`rules.routing`, delivered here.

The pure parts live in ``rules``: :func:`rules.routing.load_routing` reads the
receivers and the route tree, :class:`rules.routing.Dispatcher` decides which
:class:`~rules.routing.Notification` is due when, and :mod:`rules.notify` renders
and signs each receiver's format. This package does the I/O:
:class:`Deliverer` posts a notification at least once, with retries, and hands
what it gives up on to a dead-letter callback.

The wiring, in the order a Faust agent runs it::

    config = load_routing("routing.yaml")
    dispatcher = Dispatcher.restore(config, table["dispatcher"])  # or Dispatcher(config)
    async with Deliverer(config, on_dead_letter=to_dead_letter_topic) as deliverer:
        dispatcher.add(alert, now)                 # for every alert from the rule engine
        for notification in dispatcher.due(now):   # every second, or at next_due()
            await deliverer.deliver(notification)  # settled: delivered or dead-lettered
        table["dispatcher"] = dispatcher.snapshot()

>>> from stream.alerts import Deliverer, DeliveryResult, Outcome
>>> Outcome.DEAD_LETTERED.value
'dead_lettered'
"""

from stream.alerts.delivery import (
    RETRY_CODES,
    DeadLetterCallback,
    Deliverer,
    DeliveryResult,
    DeliveryStats,
    Outcome,
)

__all__ = [
    "RETRY_CODES",
    "DeadLetterCallback",
    "Deliverer",
    "DeliveryResult",
    "DeliveryStats",
    "Outcome",
]
