"""The MQTT-to-Kafka bridge: gateways' messages in, one Kafka record each out.

Guarantees:

* **At least once, never lost by the bridge.** It subscribes with QoS 1 on a
  persistent MQTT 5 session (``clean_start=False``, a session expiry) and
  acknowledges a message (paho's manual acks) only after Kafka has
  acknowledged (``acks=all``) the record made of it. A bridge that crashes,
  is killed or loses Kafka leaves every unacknowledged message with the
  broker, which sends it again when the same client id comes back. Records
  may be duplicated, never dropped: downstream recognises a reading by
  ``(sensor_id, seq)``.
* **One record per envelope, keyed by gateway.** A valid readings envelope
  goes to the readings topic as one record whose key is the gateway id and
  whose value is the payload exactly as received; a status message goes to the
  status topic, keyed the same way. One gateway's records share a partition,
  so its readings stay in the order the gateway sent them (a redelivery after
  a failure may come later than newer records: consumers order by event time).
* **Bad input is answered.** A payload the codec refuses, or one on an unknown
  topic or naming another gateway, becomes a JSON record on the dead-letter
  topic — reasons, field paths, values, the MQTT topic, the receive time and
  the raw bytes in base64 — and is counted by reason. It is acknowledged on
  MQTT only once Kafka has the dead-letter record. No payload stops the bridge.
* **Bounded.** At most ``max_inflight`` messages are unacknowledged (the MQTT
  5 receive maximum); while Kafka is down the bridge stops acknowledging,
  retries with backoff, and the broker keeps the backlog.
* **Scales out.** Processes in one MQTT 5 shared-subscription group split the
  messages; each needs its own, stable client id. The broker splits messages,
  not gateways, so with several processes one gateway's envelopes can reach
  its partition out of order; consumers order readings by event time and
  ``(sensor_id, seq)``. While a process is away, the broker may still assign
  messages to its session: they wait there until it comes back with the same
  client id (or the session expires).

Modules:

* :mod:`stream.bridge.route` — the pure decisions: MQTT topic and payload to a
  :class:`Route` or a :class:`DeadLetter`.
* :mod:`stream.bridge.config` — :class:`BridgeConfig` and its parts.
* :mod:`stream.bridge.bridge` — :class:`Bridge`, the paho + asyncio + aiokafka
  shell, and its :class:`BridgeStats`.
* :mod:`stream.bridge.cli` — ``urbansense bridge``.
"""

from stream.bridge.bridge import Bridge, BridgeStats
from stream.bridge.config import BridgeConfig, KafkaConfig, KafkaTopics
from stream.bridge.route import BridgeReason, DeadLetter, Rejection, Route, Router

__all__ = [
    "Bridge",
    "BridgeConfig",
    "BridgeReason",
    "BridgeStats",
    "DeadLetter",
    "KafkaConfig",
    "KafkaTopics",
    "Rejection",
    "Route",
    "Router",
]
