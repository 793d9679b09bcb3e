"""Training the anomaly model of a model designation or a machine class from the store's
healthy history.

A designation's model learns from the machines of that designation, a class's from every machine
of the class; diagnosis scores a machine with its designation's model, else its class's.

Healthy history: 60 s window means of running, settled readings (computed in SQL, the same
definition as the engine's live windows in `diagnosis.windows`), leaving out every window of a
machine that overlaps one of its alarm episodes, whatever the fault. Every window is tagged with
its machine: the model learns each machine's own healthy baseline from them, so a machine is
scored only once a training run has seen enough of its healthy windows (train again after adding
machines).
Fitting runs in a worker thread, so an API process keeps answering while a model trains.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np

from diagnosis.model import RegimeModel
from diagnosis.rules import AnomalyTiming, RuleBook
from diagnosis.windows import MODEL_SIGNALS
from telematics.store import models as model_store
from telematics.store.models import Scope, StoredModel

log = logging.getLogger(__name__)

_SIGNALS_PRESENT = " AND ".join(f"{name} IS NOT NULL" for name in MODEL_SIGNALS)
# The engine's definition (`diagnosis.windows`): running readings with every model signal, at
# least `settle_s` ($7) after their engine started. A start is a running reading whose previous
# reading with a speed was not running (or is before the period); readings without a speed carry
# the state before them, as in the engine, so they are left out of the lag.
_WINDOWS_OF = f"""
WITH speeds AS (
    SELECT r.machine_id, r.ts, r.engine_speed_rpm > 0 AS running,
           lag(r.engine_speed_rpm > 0) OVER (PARTITION BY r.machine_id ORDER BY r.ts) AS before,
           {", ".join(f"r.{name}" for name in MODEL_SIGNALS)}
    FROM readings r JOIN machines m USING (machine_id)
    WHERE m.{{column}} = $1 AND r.ts >= $2 AND r.ts < $3 AND r.engine_speed_rpm IS NOT NULL
), runs AS (
    SELECT *, max(ts) FILTER (WHERE running AND NOT coalesce(before, false))
                  OVER (PARTITION BY machine_id ORDER BY ts) AS running_since
    FROM speeds
)
SELECT machine_id,
       floor(extract(epoch FROM ts) / $4)::bigint AS window_idx,
       {", ".join(f"avg({name}) AS {name}" for name in MODEL_SIGNALS)}
FROM runs
WHERE running AND ts - running_since >= make_interval(secs => $7) AND {_SIGNALS_PRESENT}
GROUP BY 1, 2
HAVING count(*) >= $5 AND max(engine_speed_rpm) - min(engine_speed_rpm) <= $6
"""

_EPISODES_OF = """
SELECT a.machine_id,
       floor(extract(epoch FROM a.raised_at) / $4)::bigint AS first_idx,
       floor(extract(epoch FROM COALESCE(a.cleared_at, 'infinity'::timestamptz)) / $4)::float8
           AS last_idx
FROM alarms a JOIN machines m USING (machine_id)
WHERE m.{column} = $1 AND a.raised_at < $3 AND COALESCE(a.cleared_at, 'infinity') >= $2
"""

# The machines a model of each scope learns from: those of a designation, or of a class.
_COLUMN: dict[Scope, str] = {"model": "model", "class": "machine_class"}
_WINDOWS = {scope: _WINDOWS_OF.replace("{column}", c) for scope, c in _COLUMN.items()}
_EPISODES = {scope: _EPISODES_OF.replace("{column}", c) for scope, c in _COLUMN.items()}


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Healthy windows of one designation's or class's machines.

    Attributes:
        rows: One window a row, columns in `MODEL_SIGNALS` order.
        machine_ids: Per row, the machine the window is of.
        machines: Distinct machines among the rows.
        windows_dropped: Windows left out because they overlap an alarm episode.
    """

    rows: np.ndarray
    machine_ids: tuple[str, ...]
    machines: int
    windows_dropped: int


async def healthy_windows(
    conn: asyncpg.Connection,
    model: str,
    start: datetime,
    end: datetime,
    *,
    window_s: int = 60,
    min_readings: int = 5,
    max_rpm_range: float = 300.0,
    settle_s: float = 0.0,
    scope: Scope = "model",
) -> TrainingData:
    """Steady, settled window means of `MODEL_SIGNALS` for the machines of `model` (a
    designation, or a class when `scope` is `class`) in [start, end), outside alarm episodes,
    each with its machine: the rows the engine scores (see `diagnosis.windows`).
    """
    rows = await conn.fetch(
        _WINDOWS[scope], model, start, end, window_s, min_readings, max_rpm_range, settle_s
    )
    episodes = await conn.fetch(_EPISODES[scope], model, start, end, window_s)
    spans: dict[str, list[tuple[float, float]]] = {}
    for ep in episodes:
        spans.setdefault(ep["machine_id"], []).append((float(ep["first_idx"]), ep["last_idx"]))
    kept: list[list[float]] = []
    owners: list[str] = []
    for row in rows:
        idx = float(row["window_idx"])
        if any(lo <= idx <= hi for lo, hi in spans.get(row["machine_id"], ())):
            continue
        values = [row[name] for name in MODEL_SIGNALS]
        kept.append([np.nan if v is None else float(v) for v in values])
        owners.append(row["machine_id"])
    matrix = np.asarray(kept, dtype=np.float64).reshape(len(kept), len(MODEL_SIGNALS))
    return TrainingData(matrix, tuple(owners), len(set(owners)), len(rows) - len(kept))


async def _timing(
    conn: asyncpg.Connection, model: str, scope: Scope, rules: RuleBook
) -> AnomalyTiming:
    if scope == "class":
        return rules.for_machine("", model).anomaly
    # A designation's machines share a class as a rule; if some were filed otherwise, the most
    # common class of them decides (it matters only when the class sets its own windows).
    machine_class = await conn.fetchval(
        "SELECT machine_class FROM machines WHERE model = $1"
        " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        model,
    )
    return rules.for_machine(model, machine_class or "").anomaly


async def train(
    conn: asyncpg.Connection,
    model: str,
    start: datetime,
    end: datetime,
    rules: RuleBook,
    scope: Scope = "model",
) -> StoredModel:
    """Fit the anomaly model of `model` (a designation, or a class when `scope` is `class`) on
    its machines' healthy history and store it as the newest version.

    The windows are those the engine will score: `rules`' window length and minimum readings.

    Raises:
        diagnosis.model.NotEnoughDataError: Too few healthy windows to fit.
    """
    anomaly = await _timing(conn, model, scope, rules)
    data = await healthy_windows(
        conn,
        model,
        start,
        end,
        window_s=int(anomaly.window_s),
        min_readings=int(anomaly.min_readings),
        max_rpm_range=anomaly.max_rpm_range,
        settle_s=anomaly.settle_s,
        scope=scope,
    )
    log.info(
        "training %s %s on %d windows of %d machines (%d windows left out: alarms)",
        scope,
        model,
        len(data.rows),
        data.machines,
        data.windows_dropped,
    )
    started = time.monotonic()
    fitted = await asyncio.to_thread(
        RegimeModel(model).fit,
        data.rows,
        data.machine_ids,
        trained_at_ms=time.time_ns() // 1_000_000,
    )
    blob = fitted.to_bytes()
    summary = {
        **fitted.info.to_json(),
        "windows_left_out": data.windows_dropped,
        "fit_seconds": round(time.monotonic() - started, 3),
    }
    return await model_store.save_model(
        conn,
        model,
        blob,
        trained_from=start,
        trained_to=end,
        machines=data.machines,
        windows=len(data.rows),
        summary=summary,
        scope=scope,
    )
