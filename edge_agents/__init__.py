"""The gateway agent: sensors → pre-aggregation → disk queue → MQTT, losing nothing.

Runs on Raspberry Pi-class gateways, installed with the ``edge`` extra alone:
it may import ``telemetry``, paho-mqtt and structlog, never Faust, numpy or
``stream``. The parts, one module each:

* :mod:`~edge_agents.config` — the TOML configuration, validated without I/O;
* :mod:`~edge_agents.drivers` — the driver plug-in interface and the hardware
  drivers (SDS011, PMS5003, SDM Modbus meters, counters);
* :mod:`~edge_agents.aggregate` — sample at one rate, publish at another;
* :mod:`~edge_agents.sampler` — one thread per sensor, retrying failing
  drivers with :mod:`~edge_agents.backoff`;
* :mod:`~edge_agents.buffer` — the SQLite store-and-forward queue;
* :mod:`~edge_agents.publisher` — the MQTT session, batches acknowledged by
  PUBACK, the gateway's status;
* :mod:`~edge_agents.agent` — wires them and supervises the threads;
  :mod:`~edge_agents.systemd` and :mod:`~edge_agents.logs` — the service's
  notifications and structured logs; :mod:`~edge_agents.cli` —
  ``urbansense-agent check|run CONFIG``.

Run an agent from code as the command line does::

    agent = Agent(load_config("agent.toml"))
    agent.run(stop_event)  # until stop_event is set
"""

from edge_agents.agent import Agent
from edge_agents.buffer import QueueStorageError, ReadingBuffer
from edge_agents.config import AgentConfig, ConfigError, load_config, parse_config
from edge_agents.errors import DriverError, EdgeAgentError, UnknownDriverError

__all__ = [
    "Agent",
    "AgentConfig",
    "ConfigError",
    "DriverError",
    "EdgeAgentError",
    "QueueStorageError",
    "ReadingBuffer",
    "UnknownDriverError",
    "load_config",
    "parse_config",
]
