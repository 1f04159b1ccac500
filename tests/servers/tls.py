"""A throwaway PKI for the TLS tests: a CA, a broker certificate and client certificates.

Everything is made by :mod:`trustme` and written as PEM files into a test's temporary
directory, so no key ever leaves the test and nothing needs ``openssl`` on the machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import trustme

from tests.servers._procs import LOOPBACK

SERVER_IDENTITIES = (LOOPBACK, "localhost")
"""The names the broker certificate is valid for (IP address and host name)."""

ROGUE_NAME = "rogue"
"""The file stem of the client certificate issued by a CA that the broker does not trust."""


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key, as PEM files.

    Attributes:
        cert: The certificate (leaf first, then any intermediates).
        key: The unencrypted private key.
    """

    cert: Path
    key: Path


@dataclass(frozen=True)
class TestPki:
    """The PEM files of a test PKI made by :func:`make_pki`.

    Attributes:
        directory: The directory holding every file.
        ca_cert: ``ca.crt``, the CA that issued the broker and client certificates.
        server: ``server.crt`` and ``server.key``, valid for 127.0.0.1 and localhost.
        clients: The client certificates by name (``NAME.crt`` and ``NAME.key``),
            issued by ``ca_cert``.
        rogue: ``rogue.crt`` and ``rogue.key``, a client certificate issued by another
            CA, which a broker trusting only ``ca_cert`` must refuse.
        broken_cert: ``broken.crt``, a malformed PEM file: the first half of a
            certificate, cut off in the middle of its base64 text.
    """

    __test__: ClassVar[bool] = False  # not a test class, despite its name

    directory: Path
    ca_cert: Path
    server: CertFiles
    clients: Mapping[str, CertFiles]
    rogue: CertFiles
    broken_cert: Path

    def client(self, name: str) -> CertFiles:
        """Return the files of the client certificate ``name``.

        Args:
            name: A name given to :func:`make_pki`.

        Returns:
            The certificate and key files.

        Raises:
            KeyError: If no client certificate has that name.
        """
        try:
            return self.clients[name]
        except KeyError:
            msg = f"no client certificate {name!r}; the PKI has {sorted(self.clients)}"
            raise KeyError(msg) from None


def _write_leaf(leaf: trustme.LeafCert, directory: Path, stem: str) -> CertFiles:
    files = CertFiles(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    files.key.chmod(0o600)
    return files


def make_pki(directory: Path, *, client_names: Sequence[str] = ("gw-test",)) -> TestPki:
    """Create a CA, a broker certificate and client certificates as PEM files in ``directory``.

    Writes ``ca.crt``, ``server.crt``/``server.key`` (for 127.0.0.1 and localhost),
    ``NAME.crt``/``NAME.key`` for each client name (the name is the certificate's
    common name and DNS name), ``rogue.crt``/``rogue.key`` from a second, unrelated CA,
    and ``broken.crt``, a certificate PEM file cut off half way.

    Args:
        directory: Where to write the files; created if missing.
        client_names: The names of the client certificates to issue.

    Returns:
        The paths of the files.

    Raises:
        ValueError: If a client name is repeated, is empty or contains a path separator,
            or clashes with the other files' names.
    """
    reserved = {"ca", "server", ROGUE_NAME, "broken"}
    for name in client_names:
        if not name or "/" in name or name in reserved:
            msg = f"bad client certificate name {name!r} (reserved: {sorted(reserved)})"
            raise ValueError(msg)
    if len(set(client_names)) != len(client_names):
        msg = f"client certificate names repeat: {list(client_names)}"
        raise ValueError(msg)

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="urbansense test CA")
    ca_cert = directory / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_cert))
    server = _write_leaf(ca.issue_cert(*SERVER_IDENTITIES), directory, "server")
    clients = {
        name: _write_leaf(ca.issue_cert(name, common_name=name), directory, name)
        for name in client_names
    }

    rogue_ca = trustme.CA(organization_name="urbansense rogue CA")
    rogue = _write_leaf(
        rogue_ca.issue_cert(ROGUE_NAME, common_name=ROGUE_NAME), directory, ROGUE_NAME
    )

    # The first half of a real certificate: the BEGIN line and some base64, no END line.
    pem_lines = ca.cert_pem.bytes().splitlines(keepends=True)
    broken_cert = directory / "broken.crt"
    broken_cert.write_bytes(b"".join(pem_lines[: len(pem_lines) // 2]))

    return TestPki(
        directory=directory,
        ca_cert=ca_cert,
        server=server,
        clients=clients,
        rogue=rogue,
        broken_cert=broken_cert,
    )
