"""Gives the C heap's free memory back to the OS once a burst of requests is over.

After 1,000 streams at once the worker's RSS stays near its peak: CPython's arenas each keep a few survivors,
and glibc keeps the pages it freed. glibc's malloc_trim(0) hands back the latter, ~9 MB after such a burst,
in ~1 ms (measured with bench/measure.py's stream_memory; README, memory). It runs when the last request in
flight ends after at least PEAK were in flight at once, so a steady load never pays for it."""
import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

PEAK = 64   # requests in flight at once that make a burst worth trimming after


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None with another C library (musl has none)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


class BurstTrim:
    """Counts the requests in flight; trims once they are all over after a burst."""

    def __init__(self, trim: Callable[[int], int] | None = None, peak: int = PEAK):
        self.trim = trim
        self.peak = peak
        self.in_flight = self.highest = 0

    def enter(self) -> None:
        self.in_flight += 1
        self.highest = max(self.highest, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.highest >= self.peak and self.trim is not None:
            self.highest = 0
            # On the loop's next turn, once the last request's frame (its request and response) is gone.
            asyncio.get_running_loop().call_soon(self.trim, 0)


burst_trim = BurstTrim(_libc_malloc_trim())
