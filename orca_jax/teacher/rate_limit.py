"""Request pacing and retry delays for a rate-limited teacher API.

Teachers like ChatGPT (300 requests/min) and GPT-4 (18 requests/min) reject
bursts with 429; spacing request *starts* evenly keeps a run under the limit
instead of relying on retries.
"""

import asyncio
import email.utils
import random
import time


class RequestRateLimiter:
    """Lets at most `requests_per_minute` request starts through per minute, evenly spaced.

    `None` or 0 disables the limit. Safe for many coroutines on one event loop.
    """

    def __init__(self, requests_per_minute: float | None, clock=time.monotonic, sleep=asyncio.sleep):
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_start = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self._lock:  # reserving a slot is serialized; waiting for it is too, keeping order
            now = self._clock()
            start = now if self._next_start is None else max(now, self._next_start)
            self._next_start = start + self.interval
            if start > now:
                await self._sleep(start - now)


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based).

    Full-jitter exponential backoff (uniform in [0, min(cap, base * 2**attempt)]), so that
    many workers hit by the same outage do not retry in lockstep; a server's Retry-After is
    a floor, since retrying earlier is only rejected again.
    """
    rng = rng or random
    delay = rng.uniform(0.0, min(cap, base * (2.0 ** attempt)))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds from either HTTP form (delta-seconds or an HTTP date); None if absent/invalid."""
    if value is None:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(when.timestamp() - now, 0.0)
