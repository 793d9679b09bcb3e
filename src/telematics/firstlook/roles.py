"""The demo's sign-in tokens, one for each role, made with `POST /v1/tokens` and kept in the
data folder (`demo-tokens.json`, readable by its owner only).

A token's secret is shown once by the API and stored by it only as a hash, so the demo keeps the
secrets it was given. On a restart it reuses every kept token the service still lists as live,
and makes a new one only for a role whose token is gone or revoked (the file is then rewritten).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from telematics.firstlook.network import SeedError

TOKENS_FILE = "demo-tokens.json"


@dataclass(frozen=True, slots=True)
class Seat:
    """Who a token speaks for: a role and its subject (`POST /v1/tokens`'s body)."""

    role: str
    subject_id: str
    name: str


@dataclass(frozen=True, slots=True)
class SeatToken:
    """A seat with its token."""

    role: str
    subject_id: str
    name: str
    token_id: int
    token: str


def seats(engineer_ids: Sequence[str], customer_ids: Sequence[str]) -> tuple[Seat, ...]:
    """The demo's seats: an expert, the monitoring desk, every engineer and every customer."""
    return (
        Seat("expert", "demo-expert", "Control-centre expert"),
        Seat("monitor", "demo-desk", "Monitoring desk"),
        *(Seat("engineer", e, f"Engineer {e}") for e in engineer_ids),
        *(Seat("customer", c, f"Customer {c}") for c in customer_ids),
    )


async def ensure_tokens(
    http: httpx.AsyncClient, data_dir: Path, wanted: Sequence[Seat]
) -> tuple[tuple[SeatToken, ...], int]:
    """A live token for every seat: the kept ones the service still lists, new ones otherwise.

    Args:
        http: A client on the API that sends the admin's bearer token.
        data_dir: Where `demo-tokens.json` is kept.
        wanted: The seats.

    Returns:
        The tokens in the order of `wanted`, and how many were made now.

    Raises:
        SeedError: The API refused a request.
    """
    path = data_dir / TOKENS_FILE
    kept = {(t.role, t.subject_id): t for t in _read(path)}
    listed = await http.get("/v1/tokens")
    if listed.status_code != 200:
        raise SeedError("GET /v1/tokens", listed.status_code, listed.text)
    live = {t["token_id"] for t in listed.json() if t["revoked_at"] is None}
    tokens, made = [], 0
    for seat in wanted:
        token = kept.get((seat.role, seat.subject_id))
        if token is None or token.token_id not in live:
            answer = await http.post("/v1/tokens", json=asdict(seat))
            if answer.status_code != 201:
                raise SeedError("POST /v1/tokens", answer.status_code, answer.text)
            doc = answer.json()
            token = SeatToken(seat.role, seat.subject_id, seat.name, doc["token_id"], doc["token"])
            made += 1
        tokens.append(token)
    if made or len(kept) != len(tokens):
        _write(path, tokens)
    return tuple(tokens), made


def _read(path: Path) -> list[SeatToken]:
    try:
        doc: Any = json.loads(path.read_text())
        return [SeatToken(**entry) for entry in doc["tokens"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # none kept yet, or a file from elsewhere: new tokens are made


def _write(path: Path, tokens: Sequence[SeatToken]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_suffix(".tmp")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"tokens": [asdict(t) for t in tokens]}, handle, indent=2)
    fresh.replace(path)
