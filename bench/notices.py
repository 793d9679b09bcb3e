"""Notifications benchmark: the triggers' cost on the alarm path, and the outbox's throughput.

Run by hand (not in CI): `.venv/bin/python -m bench.notices` (see bench/README.md).

Over a fresh database on TELEMATICS_BENCH_DATABASE_URL:

* trigger - `store.alarms.apply_events` raising `--alarms` alarms (one per machine, 500 per
  transaction, as the diagnoser stores a batch), with the `notice_alarm_raised` trigger enabled
  against the baseline of the same with it disabled; runs alternate, best of three each.
* outbox  - `--alarms` events fanned out to one webhook subscription per customer and delivered
  to a local HTTP receiver (asyncio, answers 204) by `notices.worker`, end to end, against the
  baseline of the same number of bare signed POSTs with httpx to the same receiver (50 at once).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import httpx

from bench.harness import bench_database
from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from telematics.base.db import acquire, create_pool
from telematics.notices import worker
from telematics.notices.payload import sign
from telematics.notices.retry import RetryPolicy
from telematics.notices.webhook import WebhookSender
from telematics.store import alarms as alarm_store

SECRET = "bench-secret-0123456789"
CHUNK = 500


async def _receiver() -> tuple[asyncio.Server, list[int], list[asyncio.StreamWriter]]:
    got = [0]
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                got[0] += 1
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), got, writers


async def _raise(pool: asyncpg.Pool, machines: list[str]) -> float:
    start = time.perf_counter()
    async with acquire(pool) as conn:
        for i in range(0, len(machines), CHUNK):
            async with conn.transaction():
                await alarm_store.apply_events(
                    conn,
                    [AlarmEvent(m, LOW_OIL_PRESSURE, Transition.RAISED, 1_795_000_000_000)
                     for m in machines[i : i + CHUNK]],
                    lambda _: (Severity.CRITICAL, "Low oil pressure"),
                )  # fmt: skip
    return time.perf_counter() - start


async def _machines(pool: asyncpg.Pool, tag: str, count: int, url: str | None) -> list[str]:
    ids = [f"{tag}-{i:06d}" for i in range(count)]
    await pool.executemany(
        "INSERT INTO machines (machine_id, model, customer_id) VALUES ($1, 'excavator', $2)",
        [(m, f"C{tag}-{i % 100}") for i, m in enumerate(ids)],
    )
    if url is not None:
        await pool.executemany(
            "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
            "VALUES ($1, 'webhook', $2, $3)",
            [(f"C{tag}-{i}", url, SECRET) for i in range(100)],
        )
    return ids


async def bench_trigger(pool: asyncpg.Pool, alarms: int) -> None:
    with_trigger, without = [], []
    for run in range(3):
        await pool.execute("ALTER TABLE alarms DISABLE TRIGGER notice_alarm_raised")
        without.append(await _raise(pool, await _machines(pool, f"B{run}", alarms, None)))
        await pool.execute("ALTER TABLE alarms ENABLE TRIGGER notice_alarm_raised")
        with_trigger.append(await _raise(pool, await _machines(pool, f"T{run}", alarms, None)))
    a, b = min(with_trigger), min(without)
    print(f"trigger: {alarms / a:,.0f} alarms/s with it, {alarms / b:,.0f} without; "
          f"ratio {a / b:.2f}x the time")  # fmt: skip
    await pool.execute("UPDATE notice_events SET fanned_out_at = now()")


async def bench_outbox(pool: asyncpg.Pool, alarms: int) -> None:
    server, got, writers = await _receiver()
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    await _raise(pool, await _machines(pool, "O", alarms, url))
    channels = worker.Channels(
        webhook=WebhookSender(timeout_s=10, max_response_bytes=1024, allow_private=True)
    )
    config = worker.NoticeConfig(worker_id="bench", retry=RetryPolicy(), batch=50)
    start = time.perf_counter()
    while await worker.fan_out(pool, 500):
        pass
    fanned = time.perf_counter() - start
    while await worker.deliver_due(pool, channels, config):
        pass
    outbox_s = time.perf_counter() - start
    await channels.close()
    sent = await pool.fetchval("SELECT count(*) FROM notice_deliveries WHERE status = 'sent'")
    assert sent == alarms == got[0], (sent, alarms, got[0])

    raw = b'{"notice_id": 1, "kind": "alarm.raised", "title": "x"}'
    got[0] = 0
    async with httpx.AsyncClient() as client:
        start = time.perf_counter()
        for i in range(0, alarms, 50):
            await asyncio.gather(*(
                client.post(url, content=raw, headers={"X-Signature": sign(SECRET, 0, raw)})
                for _ in range(min(50, alarms - i))
            ))  # fmt: skip
        bare_s = time.perf_counter() - start
    for writer in writers:
        writer.close()  # ends each connection's handler (it sees EOF), then the server
    server.close()
    await server.wait_closed()
    print(f"outbox: {alarms / outbox_s:,.0f} notices/s end to end "
          f"(fan-out {alarms / fanned:,.0f} events/s); bare POSTs {alarms / bare_s:,.0f}/s; "
          f"ratio {outbox_s / bare_s:.2f}x the time")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alarms", type=int, default=5000)
    args = parser.parse_args()
    async with bench_database("bench_notices") as dsn:
        pool = await create_pool(dsn, max_size=4)
        try:
            await bench_trigger(pool, args.alarms)
            await bench_outbox(pool, args.alarms)
        finally:
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
