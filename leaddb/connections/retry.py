"""When leaddb tries again, and how long it waits first: the one place that policy lives.

* A unit of work whose transaction collided (serialization failure, deadlock) is run again by
  ``LeadDB.run_in_tenant``, after a short random wait (``TRANSACTION_CONFLICT``), so the
  transactions that collided do not collide again in step.
* Redis that failed is left alone for a growing while: the cache's breaker stops calling it
  (``REDIS_OUTAGE``), and LeanRedis, once a dial has failed, waits before it dials again
  (``REDIS_REDIAL``), so a dead Redis costs nothing per call and is not hammered with
  connection attempts.
* A pooled connection found dead at a unit of work's first statement is replaced once
  (``FRESH_CONNECTION_ATTEMPTS``): nothing has happened in that unit of work yet.
* A unit of work that lost its connection before its COMMIT was sent (a failover, a restart)
  is run again by ``LeadDB.run_in_tenant`` for up to ``FAILOVER_SECONDS``, waiting
  ``FAILOVER`` between tries while a standby is promoted. One whose COMMIT was sent is not: it
  may have committed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**failures`` seconds, at most ``cap``; with ``jitter``,
    a uniformly random wait up to that bound ("full jitter")."""

    base: float
    cap: float
    jitter: bool = False

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1 for the first)."""
        bound = min(self.base * 2 ** min(failures, 30), self.cap)
        return random.uniform(0, bound) if self.jitter else bound  # noqa: S311 (not a secret)


TRANSACTION_CONFLICT: Final = Backoff(base=0.02, cap=1.0, jitter=True)
"""Before running a unit of work again after a serialization failure or a deadlock."""

TRANSACTION_ATTEMPTS: Final = 3
"""How many times ``LeadDB.run_in_tenant`` runs a unit of work that keeps colliding."""

REDIS_OUTAGE: Final = Backoff(base=0.25, cap=30.0)
"""How long the cache leaves Redis alone after a failure (its breaker)."""

REDIS_REDIAL: Final = Backoff(base=0.05, cap=5.0)
"""How long LeanRedis waits to dial again after failed dials (the first redial is at once)."""

FAILOVER: Final = Backoff(base=0.05, cap=1.0, jitter=True)
"""Between tries of a unit of work whose connection failed (a failover takes seconds)."""

FAILOVER_SECONDS: Final = 30.0
"""How long ``LeadDB.run_in_tenant`` keeps trying a unit of work whose connection failed."""

FRESH_CONNECTION_ATTEMPTS: Final = 2
"""A unit of work's first statement: the pooled connection, then one fresh one."""
