"""What an order's readers see beside the order: the remote-fix steps the expert already tried
(the alarm's `steps_tried` trail entries, written at dispatch), and whether the customer's
survey of the order was answered (`surveys`). Reads only; asyncpg records stay here.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson


async def steps_tried(conn: asyncpg.Connection, alarm_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per alarm, the steps recorded as tried before its dispatches, oldest first, each once."""
    if not alarm_ids:
        return {}
    rows = await conn.fetch(
        "SELECT alarm_id, detail::text AS detail FROM alarm_events "
        "WHERE alarm_id = ANY($1::bigint[]) AND action = 'steps_tried' ORDER BY event_id",
        list(set(alarm_ids)),
    )
    found: dict[int, list[str]] = {}
    for row in rows:
        steps = orjson.loads(row["detail"]).get("steps", [])
        listed = found.setdefault(row["alarm_id"], [])
        listed.extend(s for s in steps if isinstance(s, str) and s not in listed)
    return found


async def surveyed(conn: asyncpg.Connection, order_ids: Sequence[int]) -> set[int]:
    """The orders among `order_ids` whose survey was answered."""
    if not order_ids:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT order_id FROM surveys WHERE order_id = ANY($1::bigint[])",
        list(set(order_ids)),
    )
    return {r["order_id"] for r in rows}
