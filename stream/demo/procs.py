"""The demo's child processes: each in its own process group, logged, probed, stopped.

A :class:`Child` runs one server or stage with its output in a log file, in a
process group of its own (so the terminal's Ctrl-C reaches the demo alone, which
stops the children in order) and with Linux's parent-death signal set, so a demo
that is killed outright still takes its children with it. :meth:`Child.stop` sends
SIGTERM to the group, waits, and sends SIGKILL after a timeout. The
:class:`Children` registry writes every child's pid to a JSON file, so anyone (the
tests) can check afterwards that none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

__all__ = [
    "Child",
    "Children",
    "Interrupted",
    "StartError",
    "http_probe",
    "log_probe",
    "tcp_probe",
]

Probe = Callable[[], Awaitable[bool]]
"""A readiness check: True once the child answers; must itself be quick."""

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class StartError(RuntimeError):
    """A child exited before it was ready, or was not ready in time; says which and why."""


class Interrupted(Exception):
    """The demo was asked to stop while a child was starting."""


def _child_setup() -> None:
    """In the child, before exec: SIGTERM when the demo dies (the group is set by Popen)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


@dataclass
class Child:
    """One child process.

    Attributes:
        name: a short name for messages.
        argv: the command line.
        log_path: where its standard output and error go.
        env: its environment (None: the demo's).
        cwd: its working directory.
        stop_timeout: seconds between SIGTERM and SIGKILL.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    stop_timeout: float = 10.0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return None if self.popen is None else self.popen.pid

    def returncode(self) -> int | None:
        """The exit status if it has exited, else None."""
        return None if self.popen is None else self.popen.poll()

    def start(self) -> None:
        """Start it; call from the main thread (the parent-death signal follows the thread)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- urbansense demo: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(  # noqa: S603 -- the demo's own command lines
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=None if self.env is None else dict(self.env),
                process_group=0,
                preexec_fn=_child_setup,
            )

    async def wait_ready(self, probe: Probe, timeout: float, stop: asyncio.Event) -> None:
        """Wait until ``probe`` succeeds.

        Raises:
            StartError: it exited first, or the timeout passed; with its log's tail.
            Interrupted: ``stop`` was set meanwhile.
        """
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            code = self.returncode()
            if code is not None:
                msg = f"{self.name} exited with status {code} while starting; {self.log_path}:\n"
                raise StartError(msg + log_tail(self.log_path))
            if await probe():
                return
            if stop.is_set():
                raise Interrupted
            if time.monotonic() > deadline:
                msg = f"{self.name} was not ready within {timeout:g} s; {self.log_path}:\n"
                raise StartError(msg + log_tail(self.log_path))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _signal_group(self, signum: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signum)

    async def stop(self) -> int | None:
        """SIGTERM to its group, wait up to ``stop_timeout``, then SIGKILL; its exit status.

        Safe to call when it never started or has exited.
        """
        if self.popen is None:
            return None
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.popen.poll() is None:
            self._signal_group(signal.SIGKILL)
            while self.popen.poll() is None:
                await asyncio.sleep(0.05)
        self._signal_group(signal.SIGKILL)  # anything left in its group
        with self.log_path.open("ab") as log:
            log.write(f"--- urbansense demo: exited with {self.popen.returncode}\n".encode())
        return self.popen.returncode


@dataclass
class Children:
    """The children started so far, in order; their pids kept in a JSON file.

    Attributes:
        record: the JSON file of ``{"name": pid}``.
        started: the children, oldest first.
    """

    record: Path
    started: list[Child] = field(default_factory=list)

    def start(self, child: Child) -> Child:
        """Start a child and note its pid."""
        child.start()
        self.started.append(child)
        self.record.write_text(
            json.dumps({c.name: c.pid for c in self.started}, indent=1) + "\n", encoding="utf-8"
        )
        return child

    async def stop_all(self, report: Callable[[str], None]) -> None:
        """Stop every child, newest first (the simulator before the brokers)."""
        for child in reversed(self.started):
            report(f"stopped {child.name} ({describe_exit(await child.stop())})")


def describe_exit(code: int | None) -> str:
    """An exit status in words.

    >>> describe_exit(0), describe_exit(-15), describe_exit(None)
    ('exit status 0', 'ended by SIGTERM', 'never started')
    """
    if code is None:
        return "never started"
    if code < 0:
        return f"ended by {signal.Signals(-code).name}"
    return f"exit status {code}"


# ------------------------------------------------------------------ probes


def tcp_probe(host: str, port: int) -> Probe:
    """Ready once a TCP connection is accepted."""

    async def probe() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return probe


def http_probe(url: str) -> Probe:
    """Ready once ``GET url`` answers 200."""

    async def probe() -> bool:
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=1.0), trust_env=False
                ) as session,
                session.get(url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    return probe


def log_probe(path: Path, *markers: str) -> Probe:
    """Ready once the log holds every marker."""

    async def probe() -> bool:
        try:
            data = path.read_bytes()
        except OSError:
            return False
        return all(m.encode() in data for m in markers)

    return probe
