"""Service-quality benchmark: the satisfaction index's estimation and the KPI query.

Run by hand (not in CI): `.venv/bin/python -m bench.satisfaction` (see bench/README.md).

* index: 10,000 answers spread over 36 months (about 278 a month), the ACSI instrument, each
  month fitted by PLS-PM with `--resamples` bootstrap resamples, as `GET /v1/satisfaction`
  over three years does; baseline the same fits without a bootstrap. Also one month holding all
  10,000 answers.
* kpis: `--orders` orders over 12 months in a fresh database (every timer fired, a desk
  callback task per dispatch, a tenth of the machines with a repeat order), the KPI facts
  read and computed per month, region and engineer as `GET /v1/service/kpis` does; baseline a
  plain read of the same orders' columns.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from bench.harness import bench_database
from telematics.quality.index import answer_matrix, period_index
from telematics.quality.instrument import load
from telematics.quality.kpi_store import KpiScope, alarm_facts, order_facts
from telematics.quality.kpis import by_period
from telematics.quality.periods import Period, period_start, starts

ACSI = load()


def answers(n: int, seed: int) -> list[dict[str, int]]:
    """ACSI-shaped answers (see tests/telematics/test_satisfaction.py), a tenth left out."""
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal(n)
    pq = 0.5 * xi + 0.8 * rng.standard_normal(n)
    pv = 0.3 * xi + 0.5 * pq + 0.7 * rng.standard_normal(n)
    sat = 0.2 * xi + 0.4 * pq + 0.3 * pv + 0.6 * rng.standard_normal(n)
    cmp = 0.5 * sat + 0.8 * rng.standard_normal(n)
    loy = 0.5 * sat + 0.2 * cmp + 0.7 * rng.standard_normal(n)
    latent = dict(zip(ACSI.construct_names(), (xi, pq, pv, sat, cmp, loy), strict=True))
    out: list[dict[str, int]] = [{} for _ in range(n)]
    for c in ACSI.constructs:
        for item in c.items:
            noisy = latent[c.name] + 0.5 * rng.standard_normal(n)
            scores = np.clip(np.rint(6.5 + 1.4 * noisy), 1, 10)
            keep = rng.random(n) > 0.1
            for r in np.flatnonzero(keep):
                out[r][item.item] = int(scores[r])
    return out


def bench_index(total: int, months: int, resamples: int) -> None:
    """Fit every month, with and without the bootstrap."""
    per_month = [answers(total // months, seed) for seed in range(months)]
    matrices = [answer_matrix(a, ACSI.items) for a in per_month]
    for label, b in (("no bootstrap (baseline)", 0), (f"bootstrap {resamples}", resamples)):
        t = time.perf_counter()
        fits = [period_index(m, ACSI, resamples=b) for m in matrices]
        s = time.perf_counter() - t
        iterations = sum(f.iterations for f in fits) / len(fits)
        print(
            f"index, {months} months x {total // months} answers, {label}: {s:.3f} s "
            f"({s / months * 1000:.1f} ms a month, {iterations:.1f} iterations a fit)"
        )
        if b == 0:
            baseline = s
    print(f"  bootstrap / baseline: {s / baseline:.0f}x")
    one = answer_matrix(answers(total, 99), ACSI.items)
    t = time.perf_counter()
    fit = period_index(one, ACSI, resamples=resamples)
    print(f"index, one month of {total} answers, bootstrap {resamples}: "
          f"{time.perf_counter() - t:.3f} s (index {fit.index:.2f}, CI {fit.ci_95})")  # fmt: skip


SEED_SQL = """
INSERT INTO machines (machine_id, model, customer_id, site_lat, site_lon, region)
SELECT 'BM-' || i, 'SY215C', 'BC-' || (i % 300), 31, 121, 'R' || (i % 8)
FROM generate_series(1, $1) i;
"""
ORDERS_SQL = """
INSERT INTO orders (machine_id, customer_id, state, severity, fault, site_lat, site_lon,
                    engineer_id, doc, created_at, arrived_at, completed_at)
SELECT 'BM-' || (1 + i % $2), 'BC-1', 'completed', 'major', 'low_oil_pressure', 31, 121,
       'BE-' || (i % 400), '{}'::jsonb, c, c + (30 + i % 600) * interval '1 minute',
       c + (120 + i % 3000) * interval '1 minute'
FROM generate_series(1, $1) i, LATERAL (SELECT $3::timestamptz + (i % 365) * interval '1 day'
                                               + (i % 1440) * interval '1 minute' AS c) t;
"""
TIMERS_SQL = """
INSERT INTO sla_timers (timer_key, order_id, kind, anchor_at, due_at, state, fired_at, verdict)
SELECT o.order_id || '/' || k.kind, o.order_id, k.kind, o.created_at, o.created_at + k.after,
       'fired', o.created_at + k.after,
       CASE WHEN o.order_id % k.every = 0 THEN 'breach' ELSE 'satisfied' END
FROM orders o, (VALUES ('callback_check', interval '15 minutes', 7),
                       ('arrival_deadline', interval '24 hours', 11),
                       ('completion_escalation', interval '48 hours', 13)) k(kind, after, every);
INSERT INTO desk_tasks (timer_id, order_id, kind, verdict, escalation, ask, due_at, created_at,
                        state, done_at)
SELECT timer_id, order_id, 'callback_check', verdict, false, 'ask', due_at, due_at, 'done',
       due_at + (timer_id % 30) * interval '1 minute'
FROM sla_timers WHERE kind = 'callback_check';
INSERT INTO engineers (engineer_id, name) SELECT 'BE-' || i, 'E' FROM generate_series(0, 399) i;
"""


async def bench_kpis(orders: int, machines: int) -> None:
    """Seed a fresh database and time the KPI computation over a year, month by month."""
    async with bench_database("bench_quality") as dsn:
        conn = await asyncpg.connect(dsn)
        since = datetime(2025, 1, 1, tzinfo=UTC)
        t = time.perf_counter()
        await conn.execute(SEED_SQL, machines)
        await conn.execute("SET session_replication_role = replica")  # no FK checks: seeding
        await conn.execute(ORDERS_SQL, orders, machines, since)
        await conn.execute(TIMERS_SQL)
        await conn.execute("SET session_replication_role = origin")
        await conn.execute("ANALYZE")
        print(f"kpis: seeded {orders} orders in {time.perf_counter() - t:.1f} s")
        until = since + timedelta(days=366)
        order = starts(since, until, Period.MONTH)
        for _ in range(2):  # the first run warms the cache
            t = time.perf_counter()
            rows = await conn.fetch(
                "SELECT o.order_id, o.created_at, m.region, o.engineer_id, o.arrived_at, "
                "o.completed_at FROM orders o JOIN machines m USING (machine_id) "
                "WHERE o.created_at >= $1 AND o.created_at < $2", since, until,
            )  # fmt: skip
            baseline = time.perf_counter() - t
            t = time.perf_counter()
            facts = await order_facts(conn, since, until, KpiScope(), grace=timedelta(minutes=15),
                                      now=datetime.now(UTC))  # fmt: skip
            alarms = await alarm_facts(conn, since, until, KpiScope())
            fetched = time.perf_counter() - t
            t = time.perf_counter()
            found = by_period(facts, alarms, order, lambda x: period_start(x, Period.MONTH))
            computed = time.perf_counter() - t
        groups = sum(len(p.regions) + len(p.engineers) + 1 for p in found)
        print(f"kpis, {len(facts)} orders, 12 months: facts query {fetched:.2f} s, arithmetic "
              f"{computed:.2f} s ({groups} groups); baseline plain read of {len(rows)} orders "
              f"{baseline:.2f} s; query / baseline {fetched / baseline:.1f}x")  # fmt: skip
        await conn.close()


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--machines", type=int, default=5_000)
    args = parser.parse_args()
    bench_index(args.answers, args.months, args.resamples)
    asyncio.run(bench_kpis(args.orders, args.machines))


if __name__ == "__main__":
    main()
