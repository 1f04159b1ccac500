"""systemd's service notification protocol, for ``Type=notify`` and the watchdog.

The agent tells systemd when it is ready (``READY=1``), pings the watchdog while
its threads are healthy (``WATCHDOG=1``) and says when it is stopping
(``STOPPING=1``). The protocol is one datagram to the socket named in
``$NOTIFY_SOCKET``, stable since systemd 209 and documented in ``sd_notify(3)``
as meant to be reimplemented; outside systemd the variable is unset and every
call does nothing.

>>> notifier = Notifier(environ={})
>>> notifier.enabled, notifier.notify("READY=1"), notifier.watchdog_interval_s()
(False, False, None)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to systemd when run under it.

    Args:
        environ: where to read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` from;
            the process environment by default.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with "@" is in the abstract namespace: a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self._watchdog_usec = ""  # the watchdog is meant for another process

    @property
    def enabled(self) -> bool:
        """Whether the process runs under systemd with a notify socket."""
        return bool(self._address)

    def watchdog_interval_s(self) -> float | None:
        """How often to ping the watchdog (half its timeout), or ``None`` without one."""
        if not self._watchdog_usec.isdigit() or int(self._watchdog_usec) == 0:
            return None
        return int(self._watchdog_usec) / 2e6

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``"READY=1"``); return whether it was sent."""
        if not self._address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(state.encode(), self._address)
            except OSError:
                return False
        return True
