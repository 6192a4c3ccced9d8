"""gateway_site/malloc_trim.py: glibc's malloc_trim once a burst of requests is over, never on a steady load."""
import asyncio
import ctypes

from gateway_site import malloc_trim


def _run(load, peak=4) -> list[int]:
    """The trims a BurstTrim asks for while `load` (enter/leave calls) runs on an event loop."""
    trims: list[int] = []

    async def run():
        counter = malloc_trim.BurstTrim(trims.append, peak=peak)
        load(counter)
        await asyncio.sleep(0)   # the trim runs on the loop's next turn
        return counter

    counter = asyncio.run(run())
    assert counter.in_flight == 0
    return trims


def test_the_end_of_a_burst_trims_once():
    def burst(counter):
        for _ in range(5):
            counter.enter()
        for _ in range(5):
            counter.leave()
        counter.enter()   # a lone request after it: no second trim
        counter.leave()

    assert _run(burst) == [0]


def test_a_steady_load_below_the_peak_never_trims():
    def steady(counter):
        for _ in range(100):
            counter.enter()
            counter.enter()
            counter.leave()
            counter.leave()

    assert _run(steady) == []


def test_requests_still_in_flight_put_the_trim_off():
    def partial(counter):
        for _ in range(5):
            counter.enter()
        for _ in range(4):
            counter.leave()

    trims: list[int] = []

    async def run():
        counter = malloc_trim.BurstTrim(trims.append, peak=4)
        partial(counter)
        await asyncio.sleep(0)
        assert trims == []
        counter.leave()
        await asyncio.sleep(0)

    asyncio.run(run())
    assert trims == [0]


def test_glibcs_malloc_trim_is_found_and_its_absence_is_tolerated(monkeypatch):
    trim = malloc_trim._libc_malloc_trim()
    assert trim is not None and trim(0) in (0, 1)   # this machine's libc is glibc

    def no_libc(name):
        raise OSError(name)

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert malloc_trim._libc_malloc_trim() is None

    async def without_trim():
        counter = malloc_trim.BurstTrim(None, peak=1)
        counter.enter()
        counter.leave()   # nothing to call: the request ends as any other
        return counter.in_flight

    assert asyncio.run(without_trim()) == 0
