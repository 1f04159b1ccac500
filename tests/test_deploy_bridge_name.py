"""deploy/bridge/instance_name.py: a bridge replica's name from a reverse DNS lookup.

A stand-in for Docker's embedded DNS server answers on a loopback UDP port with a PTR
record, as Docker's does (a compressed name pointing into the question); the script's
own query and parsing run for real against it.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.servers._procs import LOOPBACK, REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "bridge" / "instance_name.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("instance_name", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


instance_name = _load()

Answer = Callable[[bytes], bytes | None]


def ptr_answer(query: bytes, name: str) -> bytes:
    """A DNS response to ``query`` with one PTR answer whose owner points at the question."""
    ident = query[:2]
    header = ident + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    question = query[12:]
    rdata = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    answer = struct.pack(">HHHIH", 0xC00C, 12, 1, 600, len(rdata)) + rdata
    return header + question + answer


@pytest.fixture
def dns() -> Iterator[Callable[[Answer], tuple[str, int]]]:
    """Start a one-socket DNS stand-in that answers each query with ``answer(query)``."""
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(answer: Answer) -> tuple[str, int]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((LOOPBACK, 0))
        udp.settimeout(10)
        sockets.append(udp)

        def serve() -> None:
            try:
                query, peer = udp.recvfrom(512)
            except OSError:
                return
            response = answer(query)
            if response is not None:
                udp.sendto(response, peer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return LOOPBACK, int(udp.getsockname()[1])

    yield start
    for udp in sockets:
        udp.close()
    for thread in threads:
        thread.join(10)


def test_the_query_asks_for_the_ptr_record_of_the_reversed_address() -> None:
    query = instance_name.ptr_query("172.18.0.5", 0x1234)
    assert query[:2] == b"\x12\x34"
    assert b"\x015\x010\x0218\x03172\x07in-addr\x04arpa\x00\x00\x0c\x00\x01" in query


def test_the_name_of_a_compose_replica_is_read_from_a_compressed_answer(
    dns: Callable[[Answer], tuple[str, int]],
) -> None:
    server = dns(lambda query: ptr_answer(query, "deploy_bridge_2.deploy_default"))
    assert instance_name.reverse_name("172.18.0.5", server) == "deploy_bridge_2.deploy_default"


def test_a_name_error_or_a_foreign_answer_gives_none(
    dns: Callable[[Answer], tuple[str, int]],
) -> None:
    nxdomain = dns(lambda query: query[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + query[12:])
    assert instance_name.reverse_name("172.18.0.5", nxdomain) is None
    other_id = dns(lambda query: ptr_answer(b"\xff\xff" + query[2:], "x.y"))
    assert instance_name.reverse_name("172.18.0.5", other_id) is None
    silent = dns(lambda query: None)
    assert instance_name.reverse_name("172.18.0.5", silent, timeout_s=0.2) is None


def test_the_replica_name_has_dashes_and_no_network_and_falls_back_to_the_host_name(
    dns: Callable[[Answer], tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    server = dns(lambda query: ptr_answer(query, "deploy_bridge_2.deploy_default"))
    assert instance_name.instance_name(server) == "deploy-bridge-2"
    silent = dns(lambda query: None)
    assert instance_name.instance_name(silent) == socket.gethostname()
    assert "no DNS name" in capsys.readouterr().err
