"""Open-loop switch traffic: every session switched at a fixed rate, whatever the latency.

:class:`Pacer` switches each of its sessions ``rate`` times per second, the
sessions' slots spread evenly over the period (session i at ``i / (n *
rate)`` into it), over ``clients`` keep-alive connections. The schedule does
not wait for answers (open loop), so a slow server shows as latency, not as
fewer requests. A session whose previous switch is still in flight when its
slot comes is skipped (counted in :attr:`Pacer.skipped`), so each session
has one writer at a time and its versions follow one another.

For every 2xx switch, :attr:`Pacer.sent` files the ``perf_counter_ns`` read
just before the request was written under the version it produced: the
response's ``version`` **(ext)**, or the previous known version + 1 for a
server without it (the version starts from :meth:`Pacer.set_version`, e.g. a
subscriber's ``STATE_SYNC``, or the start response). :attr:`Pacer.lag`
collects how late each request left against its slot (harness queueing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import msgspec

from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request
from benchmarks.sessions import JSON
from benchmarks.stats import LatencyRecorder

__all__ = ["Pacer"]


class _Data(msgspec.Struct):
    version: int | None = None


class _Envelope(msgspec.Struct):
    data: _Data


_decode = msgspec.json.Decoder(_Envelope).decode


class Pacer:
    """Switches ``session_ids`` at ``rate`` per second each; run it with :meth:`run`."""

    def __init__(
        self,
        base: BaseUrl,
        session_ids: Sequence[str],
        rate: float,
        clients: int,
        recorder: LatencyRecorder,
    ) -> None:
        self.base = base
        self.session_ids = list(session_ids)
        self.rate = rate
        self.clients = clients
        self.recorder = recorder
        """Outcome and round trip of every switch."""
        self.sent: list[dict[int, int]] = [{} for _ in self.session_ids]
        """Per session: perf_counter_ns before sending, by the version produced."""
        self.versions = [0] * len(self.session_ids)
        """Per session: last version known."""
        self.lag_ns: list[int] = []
        """How late each switch left against its slot."""
        self.skipped = 0
        """Slots skipped because the session's previous switch was still in flight."""
        self._busy = [False] * len(self.session_ids)
        self._requests = [
            encode_request(
                "POST", f"{base.prefix}/v1/sessions/{sid}/switch", base.authority, b"{}", JSON
            )
            for sid in self.session_ids
        ]

    def set_version(self, index: int, version: int) -> None:
        """Tell the pacer the current version of session ``index`` (if higher)."""
        self.versions[index] = max(self.versions[index], version)

    async def run(self, stop: asyncio.Event) -> None:
        """Switch on schedule until ``stop`` is set; wait for requests in flight."""
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.clients)]
        try:
            await self._schedule(queue, stop)
            await queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _schedule(self, queue: asyncio.Queue[tuple[int, int]], stop: asyncio.Event) -> None:
        n = len(self.session_ids)
        if n == 0 or self.rate <= 0:
            await stop.wait()
            return
        step_ns = round(1e9 / (self.rate * n))
        due = time.perf_counter_ns()
        slot = 0
        while not stop.is_set():
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            index = slot % n
            if self._busy[index]:
                self.skipped += 1
            else:
                self._busy[index] = True
                queue.put_nowait((index, due))
            slot += 1
            due += step_ns

    async def _worker(self, queue: asyncio.Queue[tuple[int, int]]) -> None:
        connection = HttpConnection(self.base)
        clock = time.perf_counter_ns
        recorder = self.recorder
        try:
            while True:
                index, due = await queue.get()
                start = clock()
                self.lag_ns.append(max(0, start - due))
                try:
                    response = await connection.roundtrip(self._requests[index])
                except (HttpError, OSError) as exc:
                    recorder.error(type(exc).__name__, start)
                    continue
                else:
                    end = clock()
                    if 200 <= response.status < 300:
                        recorder.record(start, end - start)
                        try:
                            version = _decode(response.body).data.version
                        except msgspec.DecodeError:
                            version = None
                        known = self.versions[index] + 1 if version is None else version
                        self.versions[index] = known
                        self.sent[index][known] = start
                    else:
                        recorder.error(str(response.status), start)
                finally:
                    self._busy[index] = False
                    queue.task_done()
        finally:
            connection.close()
