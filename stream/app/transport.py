"""Faust's Kafka transport, with a setting for how long a fetch may wait for data.

Faust's aiokafka consumer asks the broker to hold each fetch up to 1.5 s until data
arrives (``fetch_max_wait_ms``, fixed in Faust). Apache Kafka answers such a fetch as
soon as a record comes. Tansu holds it the whole time if the partition was empty when
the fetch came. Measured here, one record produced now and then reached a consumer
after 407 ms (median; 743 ms at most) with Faust's 1.5 s, and after 23 ms (50 ms at
most) with 100 ms. The worker has up to three such hops (readings, by district,
alerts), so the wait is most of the time from a reading to its alert.

:class:`StreamFaustApp` is a :class:`faust.App` whose consumer waits at most
``fetch_wait_ms``; a shorter wait costs a few empty fetches a second while idle.

>>> app = StreamFaustApp("example", fetch_wait_ms=100)
>>> app.fetch_wait_ms
100
"""

from __future__ import annotations

from typing import Any, cast

import aiokafka  # type: ignore[import-untyped,unused-ignore]
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["StreamFaustApp"]

FAUST_FETCH_WAIT_MS = 1500
"""The longest wait of a fetch in Faust's own consumer."""


class StreamFaustApp(faust.App):
    """A Faust app whose Kafka consumer waits at most ``fetch_wait_ms`` per fetch."""

    def __init__(
        self, id: str, *, fetch_wait_ms: int = FAUST_FETCH_WAIT_MS, **options: Any
    ) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(id, **options)

    def _new_transport(self) -> faust.types.TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the consumer when it starts, which has not happened yet.
        consumer._fetch_max_wait_ms = cast(StreamFaustApp, self.app).fetch_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
