"""``urbansense bridge``: run one MQTT-to-Kafka bridge process until SIGTERM or SIGINT.

Subscribes (QoS 1, persistent MQTT 5 session, shared subscription) to every
gateway's readings and status topics, validates each payload, produces it to
Kafka keyed by gateway id (refused payloads go to the dead-letter topic) and
acknowledges the MQTT message once Kafka has acknowledged the record.

Run several processes with the same ``--share-group`` and each its own
``--client-id`` to split the load; restart a process with the same client id,
since the broker keeps its unacknowledged messages in that session. The MQTT
password, if any, is read from the environment variable
``URBANSENSE_MQTT_PASSWORD``, never from the command line.

The first SIGTERM or SIGINT stops taking messages, waits for the records in
flight (``--drain-timeout-s``) and acknowledges them; a second one stops at
once. Exit status: 0 stopped, 2 bad options.

Also runs as ``python -m stream.bridge.cli [OPTIONS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agents.config import MqttVersion
from edge_agents.logs import LogFormat, configure_logging
from stream.bridge.bridge import Bridge
from stream.bridge.config import DEFAULT_CLIENT_ID, DEFAULT_SHARE_GROUP, BridgeConfig

__all__ = ["PASSWORD_ENV", "add_parser", "bridge_command", "config_from_args", "main"]

PASSWORD_ENV = "URBANSENSE_MQTT_PASSWORD"  # noqa: S105 -- a variable name, not a password
"""The environment variable holding the MQTT password."""

_LOG_FORMATS = {"json": LogFormat.JSON, "console": LogFormat.TEXT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bridge's options to ``parser``."""
    defaults = BridgeConfig()
    mqtt = parser.add_argument_group("MQTT")
    mqtt.add_argument(
        "--mqtt",
        default=defaults.mqtt.url,
        metavar="URL",
        help=f"broker, mqtt://host:port or mqtts://host:port (default {defaults.mqtt.url})",
    )
    mqtt.add_argument(
        "--mqtt-protocol",
        choices=[v.value for v in MqttVersion],
        default=MqttVersion.V5.value,
        help="MQTT version; shared subscriptions and the receive maximum need 5 (default)",
    )
    mqtt.add_argument("--mqtt-username", help=f"user name; the password comes from ${PASSWORD_ENV}")
    mqtt.add_argument("--mqtt-ca-file", type=Path, help="CA certificate of an mqtts:// broker")
    mqtt.add_argument(
        "--mqtt-cert-file", type=Path, help="client certificate (with --mqtt-key-file)"
    )
    mqtt.add_argument("--mqtt-key-file", type=Path, help="client certificate's key")
    mqtt.add_argument(
        "--client-id",
        default=DEFAULT_CLIENT_ID,
        help="MQTT client id, naming the persistent session: one per process, the same "
        f"after a restart (default {DEFAULT_CLIENT_ID})",
    )
    mqtt.add_argument(
        "--share-group",
        default=DEFAULT_SHARE_GROUP,
        metavar="NAME",
        help="shared-subscription group the processes split the load in; '' for a plain "
        f"subscription (default {DEFAULT_SHARE_GROUP})",
    )
    mqtt.add_argument(
        "--max-inflight",
        type=int,
        default=defaults.max_inflight,
        help="most MQTT messages held unacknowledged (the MQTT 5 receive maximum; "
        f"default {defaults.max_inflight})",
    )
    mqtt.add_argument(
        "--session-expiry-s",
        type=int,
        default=defaults.session_expiry_s,
        help="how long the broker keeps the session while away (default %(default)s)",
    )
    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument(
        "--kafka",
        default=defaults.kafka.bootstrap_servers,
        metavar="HOST:PORT",
        help=f"bootstrap servers, comma-separated (default {defaults.kafka.bootstrap_servers})",
    )
    kafka.add_argument(
        "--readings-topic", default=defaults.topics.readings, help="default %(default)s"
    )
    kafka.add_argument("--status-topic", default=defaults.topics.status, help="default %(default)s")
    kafka.add_argument(
        "--dead-letter-topic", default=defaults.topics.dead_letter, help="default %(default)s"
    )
    kafka.add_argument(
        "--linger-ms",
        type=int,
        default=defaults.kafka.linger_ms,
        help="how long the producer fills a batch (default %(default)s)",
    )
    kafka.add_argument(
        "--request-timeout-ms",
        type=int,
        default=defaults.kafka.request_timeout_ms,
        help="a produce request failing after this long is retried (default %(default)s)",
    )
    kafka.add_argument(
        "--create-topics",
        type=int,
        metavar="PARTITIONS",
        help="create the three topics if missing, with this many partitions",
    )
    run = parser.add_argument_group("process")
    run.add_argument(
        "--drain-timeout-s",
        type=float,
        default=defaults.drain_timeout_s,
        help="on stop, how long to wait for records in flight (default %(default)s)",
    )
    run.add_argument(
        "--stats-interval-s",
        type=float,
        default=defaults.stats_interval_s,
        help="how often the counters are logged (default %(default)s)",
    )
    run.add_argument("--log-format", choices=list(_LOG_FORMATS), default="console")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register the ``bridge`` subcommand on an argparse subparsers object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``bridge`` parser, whose ``func`` default is :func:`bridge_command`.

    >>> parser = argparse.ArgumentParser(prog="urbansense")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["bridge", "--kafka", "k1:9092", "--share-group", "blue"])
    >>> config = config_from_args(args)
    >>> config.kafka.bootstrap_servers, config.share_group, args.func is bridge_command
    ('k1:9092', 'blue', True)
    """
    parser = subparsers.add_parser(
        "bridge",
        help="forward gateways' MQTT messages to Kafka (ack after Kafka acked)",
        description=__doc__.split("\n\n", 1)[1].split("Also runs as")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=bridge_command)
    return parser


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> BridgeConfig:
    """The bridge configuration the options ask for; raises pydantic's ``ValidationError``.

    Args:
        args: the parsed options.
        environ: where the password is looked up; the process environment by default.
    """
    env = os.environ if environ is None else environ
    broker: dict[str, Any] = {"url": args.mqtt, "protocol": args.mqtt_protocol}
    if args.mqtt_ca_file is not None:
        broker["tls"] = {
            "ca_file": args.mqtt_ca_file,
            "cert_file": args.mqtt_cert_file,
            "key_file": args.mqtt_key_file,
        }
    if args.mqtt_username is not None:
        broker["username"] = args.mqtt_username
        broker["password"] = env.get(PASSWORD_ENV)
    return BridgeConfig.model_validate(
        {
            "mqtt": broker,
            "client_id": args.client_id,
            "share_group": args.share_group or None,
            "session_expiry_s": args.session_expiry_s,
            "max_inflight": args.max_inflight,
            "kafka": {
                "bootstrap_servers": args.kafka,
                "linger_ms": args.linger_ms,
                "request_timeout_ms": args.request_timeout_ms,
                "create_topics_partitions": args.create_topics,
            },
            "topics": {
                "readings": args.readings_topic,
                "status": args.status_topic,
                "dead_letter": args.dead_letter_topic,
            },
            "drain_timeout_s": args.drain_timeout_s,
            "stats_interval_s": args.stats_interval_s,
        }
    )


def bridge_command(args: argparse.Namespace) -> int:
    """Run the bridge the options describe until SIGTERM or SIGINT; returns the exit status."""
    try:
        config = config_from_args(args)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(all)'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        print(f"urbansense bridge: bad options: {problems}", file=sys.stderr)
        return 2
    configure_logging(_LOG_FORMATS[args.log_format], level=args.log_level)
    if args.log_level != "debug":
        # aiokafka logs every failed connection attempt through the standard library;
        # the bridge logs each Kafka failure itself, with its retry delay.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(_serve(Bridge(config)))
    return 0


async def _serve(bridge: Bridge) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, bridge.stop)
    await bridge.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``urbansense bridge`` on its own; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="urbansense bridge",
        description=__doc__.split("\n\n", 1)[1].split("Also runs as")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return bridge_command(args)
    except OSError as error:  # an unreadable TLS file, say
        print(f"urbansense bridge: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
