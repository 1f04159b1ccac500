"""The main job on an embedded default: a simulated city through the whole pipeline.

``python -m stream.demo`` (``make demo``) starts, on this machine and on loopback
ports, every part of the stream: an MQTT broker (Mosquitto, or the pure-Python
amqtt), the Tansu Kafka-protocol broker, the simulated city of a scenario published
by virtual gateways, the bridge, a stream worker with the default alert rules, a
webhook receiver that shows each alert, and a store (VictoriaMetrics, or
line-protocol files). A live view shows what has landed; Ctrl-C stops everything.

* :mod:`stream.demo.plan` -- the decisions (which broker, which store, the
  scenario's time shift, the servers' configuration), pure;
* :mod:`stream.demo.store` -- what landed, read back from the store;
* :mod:`stream.demo.view` -- from what landed to the rows and colours shown, pure;
* :mod:`stream.demo.receiver` -- the webhook receiver;
* :mod:`stream.demo.procs` -- child processes: start, readiness, stop;
* :mod:`stream.demo.run` -- the orchestration;
* :mod:`stream.demo.cli` -- the command line.
"""

from stream.demo.cli import main

__all__ = ["main"]
