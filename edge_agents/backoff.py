"""Exponential backoff with full jitter, for reconnecting and reopening devices.

The agent retries two things for as long as it runs: the broker connection and
each sensor's driver. Both loops need the same policy — wait longer after each
failure, up to a ceiling, with randomness so that a hundred gateways cut off by
the same cellular outage do not all reconnect in the same second — and both
need to *keep* the delay after a connection that only lasted a moment, so a
broker that accepts and then drops a client is not hammered. That is a small
piece of state kept by the loop, not a wrapper around one call, so it lives
here rather than in a retry decorator.

"Full jitter" draws each delay uniformly from ``[0, ceiling]``, where the
ceiling doubles after each failure (``initial_s``, ``2 * initial_s``, … up to
``max_s``): it spreads retries best for the least total wait.

>>> import random
>>> backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(7))
>>> backoff.ceiling_s()
1.0
>>> [round(backoff.next_delay(), 2) for _ in range(5)]  # ceilings 1, 2, 4, 8, 8
[0.32, 0.3, 2.6, 0.58, 4.29]
>>> backoff.failures, backoff.ceiling_s()
(5, 8.0)
>>> backoff.reset()
>>> backoff.ceiling_s()
1.0
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """The delay before the next attempt, growing with consecutive failures.

    Args:
        initial_s: the ceiling of the first delay, in seconds.
        max_s: the largest ceiling, in seconds.
        rng: the source of jitter; pass a seeded ``random.Random`` in tests.

    Attributes:
        failures: consecutive failures since the last :meth:`reset`.
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and math.isfinite(self.max_s)):
            msg = (
                f"need 0 < initial_s <= max_s (finite), got initial_s={self.initial_s!r}"
                f" max_s={self.max_s!r}"
            )
            raise ValueError(msg)

    def ceiling_s(self) -> float:
        """The largest delay the next failure can draw."""
        # min() before the power keeps 2**failures from overflowing after months of failures.
        doublings = min(self.failures, 64)
        return min(self.max_s, self.initial_s * 2.0**doublings)

    def next_delay(self) -> float:
        """Count one failure and return how long to wait before trying again."""
        delay = self.rng.uniform(0.0, self.ceiling_s())
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Forget the failures: the attempt succeeded and stayed up."""
        self.failures = 0
