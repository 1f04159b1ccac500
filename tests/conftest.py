"""Fixtures that run real servers (see tests/servers) for the tests marked ``servers``.

The brokers and databases are session-scoped: each starts once, on demand, and the tests
that share one isolate themselves by unique topic, database and measurement names.
``private_mosquitto`` is a per-test broker for tests that restart it, and
``tls_mosquitto`` a per-test broker with a TLS listener and passwords, and ``amqtt`` a
per-test MQTT 3.1.1-only broker.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

from tests.servers._procs import Server
from tests.servers.amqtt import AmqttServer
from tests.servers.influxdb1 import InfluxDB1Server
from tests.servers.mosquitto import MosquittoServer
from tests.servers.tansu import TansuServer
from tests.servers.tls import TestPki, make_pki
from tests.servers.victoria_metrics import VictoriaMetricsServer

# Property tests check behaviour, not speed: no per-example deadline, which a busy
# CI machine would otherwise turn into flaky failures.
settings.register_profile("urbansense", deadline=None, print_blob=True)
settings.load_profile("urbansense")


ServerT = TypeVar("ServerT", bound=Server)


def _running(server: ServerT) -> Iterator[ServerT]:
    """Start ``server``, yield it, and stop it afterwards whatever the test did."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A Mosquitto broker running the shipped config, shared by the whole session."""
    yield from _running(MosquittoServer.create(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A Mosquitto broker running the shipped config, for one test only (it may restart it)."""
    yield from _running(MosquittoServer.create(tmp_path / "mosquitto"))


TLS_CLIENT = "gw-test"
"""The client certificate name and the username of the ``tls_mosquitto`` fixture."""


@pytest.fixture
def test_pki(tmp_path: Path) -> TestPki:
    """A throwaway CA with a broker certificate and the client certificate ``gw-test``."""
    return make_pki(tmp_path / "pki", client_names=(TLS_CLIENT,))


@pytest.fixture
def tls_mosquitto(tmp_path: Path, test_pki: TestPki) -> Iterator[MosquittoServer]:
    """A Mosquitto broker for one test, with a TLS listener and password authentication.

    Its ``tls_port`` requires a client certificate issued by ``test_pki`` (its ``pki``),
    and both listeners require the user ``gw-test`` with the random password in its
    ``passwords``; anonymous clients are refused.
    """
    yield from _running(
        MosquittoServer.create(
            tmp_path / "mosquitto",
            tls=test_pki,
            passwords={TLS_CLIENT: secrets.token_urlsafe(16)},
        )
    )


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuServer]:
    """A Tansu Kafka-protocol broker with in-memory storage, shared by the whole session."""
    yield from _running(TansuServer.create(tmp_path_factory.mktemp("tansu")))


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """A VictoriaMetrics server, shared by the whole session."""
    yield from _running(VictoriaMetricsServer.create(tmp_path_factory.mktemp("victoria-metrics")))


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    """An InfluxDB 1.x server, shared by the whole session."""
    yield from _running(InfluxDB1Server.create(tmp_path_factory.mktemp("influxdb1")))


@pytest.fixture
def amqtt(tmp_path: Path) -> Iterator[AmqttServer]:
    """amqtt, a broker that speaks MQTT 3.1.1 only, for one test."""
    yield from _running(AmqttServer.create(tmp_path / "amqtt"))
