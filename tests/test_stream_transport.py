"""The worker's Kafka producer against a real Tansu: the topics whose metadata it keeps.

aiokafka's client asks for every topic's metadata until it first sends to a topic it
did not know; from then on it asks only for the topics it had to add, and drops the
others at the next refresh. A batch queued for a dropped topic then waits for a
leader no refresh brings: the stream worker once stopped sending to its
``by_district`` topic that way. :class:`stream.app.transport.BatchProducer` keeps
every topic it sends to.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream.app.transport import BatchProducer, StreamFaustApp
from tests.servers.stream_worker import create_topics
from tests.servers.tansu import TansuServer


async def _known_after_refresh(tansu: TansuServer) -> dict[str, Any]:
    """Send to a topic that existed at start and one made later; refresh; what is known."""
    await create_topics(tansu, ["transport.early"], 2)
    app = StreamFaustApp("transport-test", broker=tansu.faust_broker)
    producer = app.producer
    assert isinstance(producer, BatchProducer)
    await producer.start()
    try:
        sent = await producer.send("transport.early", b"k", b"v", 0, None, None)
        await asyncio.wait_for(sent, 30)
        await create_topics(tansu, ["transport.later"], 2)
        batches = await producer.send_records("transport.later", 1, [(b"a", b"1"), (b"b", b"2")])
        await asyncio.wait_for(asyncio.gather(*batches), 30)
        client = producer._ensure_producer().client
        await asyncio.wait_for(client.force_metadata_update(), 30)
        cluster = client.cluster
        return {
            topic: cluster.partitions_for_topic(topic)
            for topic in ("transport.early", "transport.later")
        }
    finally:
        await producer.stop()


def test_the_producer_keeps_the_metadata_of_every_topic_it_sent_to(tansu: TansuServer) -> None:
    known = asyncio.run(_known_after_refresh(tansu))
    # Without tracking, the early topic's partitions are None after the refresh.
    assert known == {"transport.early": {0, 1}, "transport.later": {0, 1}}
