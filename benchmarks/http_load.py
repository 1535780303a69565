"""A pure-Python closed-loop HTTP load generator: ``bench_http.py``'s fallback when ``wrk`` is not installed.

Each of ``connections`` keep-alive connections sends its next request as soon
as the previous answer has been read (as wrk does), for ``seconds``, and every
request's latency is recorded. Requests are formatted once; a connection
walks the list round-robin from its own offset, so concurrent connections do
not send the same body at the same time.

It runs on the same cores as the server and costs ~50-100 µs of CPU per
request (asyncio streams), which wrk does in a few: figures measured with it
are lower bounds of the server's, and the report says which client ran.
The result has the keys of ``http_score.lua``'s ``done()`` line.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from urllib.parse import urlsplit


def format_requests(url: str, method: str, path: str, bodies: Sequence[bytes], headers: dict[str, str]) -> list[bytes]:
    """One HTTP/1.1 keep-alive request per body (a single body-less request for a GET)."""
    host = urlsplit(url).netloc
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if method == "GET":
        return [f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()]
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: application/json\r\n"
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (``Content-Length`` framed, as uvicorn sends them); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked answers are not supported by this client; install wrk")
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str, port: int, requests: list[bytes], offset: int, until: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < until:
            i = (i + 1) % len(requests)
            started = time.perf_counter()
            writer.write(requests[i])
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors[1] += 1
    finally:
        writer.close()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest rank."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def run(url: str, requests: list[bytes], connections: int, seconds: float) -> dict[str, float]:
    """Drive ``connections`` closed-loop connections for ``seconds``; wrk-like totals and percentiles (µs)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = [0, 0]  # non-2xx answers, socket errors

    async def main() -> float:
        started = time.perf_counter()
        until = started + seconds
        offsets = [(k * 7919) % len(requests) for k in range(connections)]
        await asyncio.gather(*(_connection(host, port, requests, o, until, latencies, errors) for o in offsets))
        return time.perf_counter() - started

    duration = asyncio.run(main())
    ordered = sorted(latencies)
    us = [x * 1e6 for x in (percentile(ordered, q) for q in (50, 90, 99, 99.9))]
    return {
        "requests": len(ordered),
        "duration_us": int(duration * 1e6),
        "status_errors": errors[0],
        "read_errors": errors[1],
        "connect_errors": 0,
        "write_errors": 0,
        "timeouts": 0,
        "p50_us": us[0],
        "p90_us": us[1],
        "p99_us": us[2],
        "p999_us": us[3],
        "max_us": (ordered[-1] * 1e6) if ordered else 0.0,
    }
