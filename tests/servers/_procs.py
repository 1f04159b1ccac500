"""Process plumbing shared by the server fixtures: free ports, start, readiness, stop."""

from __future__ import annotations

import ctypes
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
"""Every server binds to this address only."""

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The project's root directory (the one holding ``pyproject.toml``)."""

Probe = Callable[[], bool]
"""A readiness check: returns True once the server answers; must itself be quick."""

_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class ServerStartError(RuntimeError):
    """A server exited before it was ready, or was not ready by its deadline."""


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on ``host`` right now.

    All sockets stay bound until every port is chosen, so the ports are distinct.

    Args:
        count: How many ports to return.
        host: The address the ports must be free on.

    Returns:
        The port numbers.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    Args:
        host: The address the port must be free on.

    Returns:
        The port number.
    """
    return free_ports(1, host)[0]


def require_binary(name: str, debian_package: str) -> str:
    """Return the path of the executable ``name``, or fail the test naming its package.

    ``/usr/sbin`` and friends are searched too, since they are not on every user's PATH.

    Args:
        name: The executable's file name, or an absolute path.
        debian_package: The Debian package that installs it, for the failure message.

    Returns:
        The executable's path.
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(
            f"{name} not found: install the Debian package '{debian_package}' "
            "(make test does this)",
            pytrace=False,
        )
    return found


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of the log file ``path`` (or a note if it is unreadable).

    Args:
        path: The log file.
        lines: How many lines to return at most.

    Returns:
        The tail, as text.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(no log: {exc})"
    tail = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def tcp_probe(host: str, port: int) -> Probe:
    """Return a probe that succeeds once a TCP connection to ``host:port`` is accepted.

    Args:
        host: The server's address.
        port: The server's port.

    Returns:
        The probe.
    """

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    return probe


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """Send one HTTP request to a test server, bypassing any proxy, and return the answer.

    Unlike :func:`urllib.request.urlopen`, an error status is returned, not raised.

    Args:
        method: The HTTP method.
        url: An ``http://`` URL.
        body: The request body, if any.
        headers: Extra request headers.
        timeout: Seconds to wait for the connection and the answer.

    Returns:
        The status code and the response body.

    Raises:
        ValueError: If ``url`` is not an ``http://`` URL.
    """
    if urllib.parse.urlsplit(url).scheme != "http":
        msg = f"not an http:// URL: {url!r}"
        raise ValueError(msg)
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310 -- scheme checked above
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_probe(url: str, statuses: Sequence[int] = (200, 204)) -> Probe:
    """Return a probe that succeeds once ``GET url`` answers with one of ``statuses``.

    Args:
        url: The health endpoint.
        statuses: The status codes that mean ready.

    Returns:
        The probe.
    """

    def probe() -> bool:
        try:
            status, _ = http_request("GET", url, timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        return status in statuses

    return probe


def log_probe(path: Path, marker: str) -> Probe:
    """Return a probe that succeeds once the log file ``path`` contains ``marker``.

    Args:
        path: The log file.
        marker: The text that the process writes when it is ready.

    Returns:
        The probe.
    """

    def probe() -> bool:
        try:
            return marker.encode() in path.read_bytes()
        except OSError:
            return False

    return probe


_PR_SET_PDEATHSIG = 1
# Loaded in the parent, so that the child does as little as possible between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this (child) process when its parent dies (PR_SET_PDEATHSIG).

    Runs in the child between fork and exec, so that a killed test run leaks no server.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class ManagedProcess:
    """One server process: started with its output in a log file, probed, and stopped.

    Attributes:
        name: A short name for messages.
        argv: The command line.
        log_path: The file that receives the process's stdout and stderr (appended to
            across restarts).
        probe: The readiness check.
        cwd: The working directory, or None for the current one.
        env: The environment, or None to inherit this process's.
        start_timeout: Seconds to wait for the probe to succeed.
        stop_timeout: Seconds to wait after SIGTERM before SIGKILL.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    probe: Probe
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id, or None when it is not started."""
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        """Start the process and wait until its probe succeeds.

        Raises:
            RuntimeError: If the process is already running.
            ServerStartError: If it exits early or is not ready in time; the message
                holds the tail of its log. The process is stopped first.
        """
        if self.running:
            msg = f"{self.name} is already running (pid {self.pid})"
            raise RuntimeError(msg)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- urbansense test: starting {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=None if self.env is None else dict(self.env),
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + self.start_timeout
        pause = 0.01
        while True:
            code = self._popen.poll()
            if code is not None:
                msg = (
                    f"{self.name} exited with code {code} before it was ready.\n"
                    f"command: {shlex.join(self.argv)}\n"
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
                raise ServerStartError(msg)
            if self.probe():
                return
            if time.monotonic() >= deadline:
                msg = (
                    f"{self.name} was not ready within {self.start_timeout:g} s.\n"
                    f"command: {shlex.join(self.argv)}\n"
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
                raise ServerStartError(msg)
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def stop(self) -> None:
        """Stop the process: SIGTERM, wait up to ``stop_timeout``, then SIGKILL.

        Does nothing if it is not started; safe to call more than once.
        """
        proc, self._popen = self._popen, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        with self.log_path.open("ab") as log:
            log.write(
                f"--- urbansense test: {self.name} exited with code {proc.returncode}\n".encode()
            )

    def restart(self) -> None:
        """Stop the process gracefully, then start it again with the same command."""
        self.stop()
        self.start()


@dataclass
class Server:
    """A server the tests run: where it listens, where it keeps its files, and its process.

    Each kind of server subclasses this with a ``create(root)`` that prepares it
    (configuration, ports) without starting it, and may add fields of its own.

    Attributes:
        host: The address it listens on.
        port: Its main port.
        data_dir: The directory holding its data.
        log_path: Its log file.
        process: The managed process.
    """

    host: str
    port: int
    data_dir: Path
    log_path: Path
    process: ManagedProcess

    def start(self) -> None:
        """Start the server and wait until its readiness probe succeeds."""
        self.process.start()

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it does not exit in time."""
        self.process.stop()

    def restart(self) -> None:
        """Stop the server gracefully and start it again on the same port and data."""
        self.process.restart()

    @property
    def url(self) -> str:
        """The base HTTP URL, for servers that speak HTTP."""
        return f"http://{self.host}:{self.port}"
