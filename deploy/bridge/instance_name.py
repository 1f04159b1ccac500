"""Print the compose name of this container (``deploy-bridge-2``), for a stable MQTT client id.

Each bridge keeps a persistent MQTT session in which the broker queues the messages
of the shared subscription that it hands to that bridge, even while the bridge is
away. The session must therefore outlive the container: when ``docker-compose up``
recreates the bridges (a new image), each new container has to take over the session
of the one it replaces, or the old sessions keep receiving their share of the
readings with no one to read them.

A container's host name is its random id, but its compose name carries the replica's
number (``deploy_bridge_2`` with docker-compose 1.x, ``deploy-bridge-2`` with the
compose plugin), and Docker's embedded DNS server (127.0.0.11, on every compose
network) answers a reverse lookup of the container's address with that name. The
name resolver of the C library would read ``/etc/hosts`` first and find the id, so
this script asks the DNS server itself, with one PTR query.

Prints the name (underscores turned into dashes, as MQTT ids of the project allow
no underscore), or the host name if the DNS server gives no name, with a warning
on standard error. Standard library only: it runs as
``python instance_name.py`` inside the project's image (see ``Dockerfile``).
"""

from __future__ import annotations

import secrets
import socket
import struct
import sys

DOCKER_DNS = ("127.0.0.11", 53)
"""Docker's embedded DNS server on user-defined (compose) networks."""

_PTR = 12
_IN = 1


def _encode_name(name: str) -> bytes:
    return (
        b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"
    )


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    """Read a (possibly compressed) domain name; returns it and the offset after it."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # a bound on pointer chains
        length = message[offset]
        if length & 0xC0 == 0xC0:  # a pointer to an earlier name
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    msg = "a DNS name with too many labels or a pointer loop"
    raise ValueError(msg)


def ptr_query(address: str, ident: int) -> bytes:
    """The DNS query for the PTR record of an IPv4 address."""
    reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
    header = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired
    return header + _encode_name(reverse) + struct.pack(">HH", _PTR, _IN)


def parse_ptr_answer(message: bytes, ident: int) -> str | None:
    """The first PTR name in a DNS answer to the query ``ident``, or None."""
    rid, flags, questions, answers, _, _ = struct.unpack(">HHHHHH", message[:12])
    if rid != ident or flags & 0x000F or answers == 0:
        return None
    offset = 12
    for _ in range(questions):
        _, offset = _read_name(message, offset)
        offset += 4
    for _ in range(answers):
        _, offset = _read_name(message, offset)
        rtype, _, _, length = struct.unpack(">HHIH", message[offset : offset + 10])
        offset += 10
        if rtype == _PTR:
            return _read_name(message, offset)[0]
        offset += length
    return None


def reverse_name(
    address: str, server: tuple[str, int] = DOCKER_DNS, timeout_s: float = 2.0
) -> str | None:
    """Ask ``server`` for the name of ``address``; None if it does not answer with one."""
    ident = secrets.randbelow(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout_s)
        try:
            udp.sendto(ptr_query(address, ident), server)
            answer = udp.recv(4096)
        except OSError:
            return None
    try:
        return parse_ptr_answer(answer, ident)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None


def instance_name(server: tuple[str, int] = DOCKER_DNS) -> str:
    """This container's compose name, or its host name when DNS does not know it."""
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        address = ""
    name = reverse_name(address, server) if address else None
    if not name:
        print(f"instance_name: no DNS name for {address or host}; using {host}", file=sys.stderr)
        return host
    return name.split(".")[0].replace("_", "-")


if __name__ == "__main__":
    print(instance_name())
