"""A per-provider rate limit: a thread-safe token bucket shared by every call of a sweep."""
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_second` calls on average, up to `burst` at once after a quiet spell."""

    def __init__(self, rate_per_second: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, not {rate_per_second!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated_at = clock()

    def _refill_locked(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated_at) * self.rate_per_second)
        self._updated_at = now

    def acquire(self) -> None:
        """Take one token, waiting until it is due."""
        # A caller reserves its token under the lock (the balance may go negative) and waits outside
        # it, so waiting callers queue in order and never hold each other up twice.
        with self._lock:
            self._refill_locked()
            self._tokens -= 1
            wait = -self._tokens / self.rate_per_second
        if wait > 0:
            self._sleep(wait)

    def hold(self, seconds: float) -> None:
        """Give out no token for `seconds` (a provider's Retry-After applies to every caller, not one)."""
        with self._lock:
            self._refill_locked()
            self._tokens = min(self._tokens, 1 - seconds * self.rate_per_second)
