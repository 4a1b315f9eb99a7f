"""A light asyncio HTTP/1.1 load client: open-loop schedules over keep-alive connections.

Why not httpx in a thread pool: at 200 requests/s such a pool cost the client ~0.4-0.5 of a
core (its threads contend for the GIL) and its own stalls showed in the measured p99: A/A runs
against one service differed by -44 to +16 ms. This client costs a fraction of that, and A/A
runs differ by 0.05-0.15 ms (docs/benchmarks.md). Latency counts from each request's scheduled
time, so a slow server makes requests wait, as real users would (an open loop).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np


class Connection:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def on_schedule(run, due: asyncio.Queue, n: int, rate: float, connections: int) -> None:
    """Start ``connections`` copies of ``run``, feed ``due`` ``(i, scheduled time)`` for ``n``
    requests at ``rate``/s, then a stop for each, and wait for them (an open loop)."""
    workers = [asyncio.create_task(run()) for _ in range(connections)]
    start = time.perf_counter() + 0.1
    for i in range(n):
        at = start + i / rate
        if (wait := at - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        due.put_nowait((i, at))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)


async def open_gets(host: str, port: int, users: list[str], rate: float, seconds: float,
                    connections: int = 16) -> list[float]:
    """GET /recommendations on a fixed schedule; latencies (ms) from the scheduled times (inf
    for an answer other than 200)."""
    latencies: list[float] = []
    due: asyncio.Queue = asyncio.Queue()

    async def run():
        conn = await Connection(host, port).open()
        try:
            while (job := await due.get()) is not None:
                i, at = job
                status, _ = await conn.request("GET", f"/recommendations/{users[i % len(users)]}")
                latencies.append((time.perf_counter() - at) * 1e3 if status == 200 else np.inf)
        finally:
            conn.close()

    await on_schedule(run, due, int(rate * seconds), rate, connections)
    return latencies


def open_loop(url: str, users: list[str], rate: float, seconds: float,
              connections: int = 16) -> dict:
    """GET /recommendations at ``rate``/s for ``seconds``: latencies (ms), errors, rates."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    start = time.perf_counter()
    latencies = asyncio.run(open_gets(host, int(port), users, rate, seconds, connections))
    wall = time.perf_counter() - start
    ok = [x for x in latencies if np.isfinite(x)]
    return {"latencies": ok, "errors": len(latencies) - len(ok), "achieved": len(ok) / wall,
            "offered": rate}
