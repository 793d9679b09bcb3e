"""Who may read the AEMP feed: OAuth 2.0 client credentials as RFC 6749 answers them, product
tokens, refused tokens of every kind, and the rate limit per client.
"""

from __future__ import annotations

import base64

import asyncpg

from telematics.base.config import Settings
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.aemp_world import ADMIN, access_token, basic, issue_client, seed_fleet
from tests.telematics.harness import api_client

FORM = "application/x-www-form-urlencoded"


async def test_client_credentials_by_basic_or_form_give_a_bearer_token(pool: asyncpg.Pool) -> None:
    customer = unique("AEMPA")
    await seed_fleet(pool, customer, unique("AEA"), 2)
    async with api_client(pool) as http:
        client_id, secret = await issue_client(http, customer)
        listed = (await http.get("/v1/aemp/clients", headers=ADMIN)).json()
        mine = [c for c in listed if c["client_id"] == client_id]
        assert mine == [{**mine[0], "customer_id": customer, "revoked_at": None}]
        assert "client_secret" not in mine[0]
        async with pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT secret_hash FROM aemp_clients WHERE client_id = $1", client_id
            )
        assert secret.encode() not in bytes(stored)
        for kwargs in (
            {"data": {"grant_type": "client_credentials"}, "headers": basic(client_id, secret)},
            {"data": {"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": secret, "scope": "fleet"}},
        ):  # fmt: skip
            answer = await http.post("/aemp/token", **kwargs)  # type: ignore[arg-type]
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["token_type"] == "Bearer"
            assert body["expires_in"] == 3600
            assert answer.headers["cache-control"] == "no-store"
            fleet = await http.get(
                "/aemp/Fleet/1", headers={"Authorization": f"Bearer {body['access_token']}"}
            )
            assert fleet.status_code == 200
            assert fleet.content.count(b"<Equipment>") == 2


async def test_token_requests_get_rfc_6749_errors(pool: asyncpg.Pool) -> None:
    async with api_client(pool) as http:
        client_id, secret = await issue_client(http, unique("AEMPE"))
        grant = {"grant_type": "client_credentials"}
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"data": grant, "headers": basic(client_id, "wrong")}, 401, "invalid_client"),
            ({"data": grant, "headers": basic("aemp-unknown", secret)}, 401, "invalid_client"),
            ({"data": grant}, 401, "invalid_client"),
            ({"data": {**grant, "client_id": f"{client_id}\x00", "client_secret": secret}},
             401, "invalid_client"),
            ({"data": grant, "headers": {"Authorization": "Basic !!not-base64"}},
             401, "invalid_client"),
            ({"data": grant, "headers": {
                "Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}},
             401, "invalid_client"),
            ({"data": {"grant_type": "password"}, "headers": basic(client_id, secret)},
             400, "unsupported_grant_type"),
            ({"data": {}, "headers": basic(client_id, secret)}, 400, "invalid_request"),
            ({"json": grant, "headers": basic(client_id, secret)}, 400, "invalid_request"),
            ({"content": "grant_type=client_credentials&grant_type=client_credentials",
              "headers": {**basic(client_id, secret), "Content-Type": FORM}},
             400, "invalid_request"),
            ({"content": b"grant_type=client_credentials&x=%ff%fe",
              "headers": {**basic(client_id, secret), "Content-Type": FORM}},
             400, "invalid_request"),
            ({"content": "grant_type=client_credentials&x=\u00e9".encode(),
              "headers": {**basic(client_id, secret), "Content-Type": FORM}},
             400, "invalid_request"),
            ({"data": {**grant, "client_id": client_id, "client_secret": secret},
              "headers": basic(client_id, secret)}, 400, "invalid_request"),
            ({"data": {**grant, "client_id": client_id, "client_secret": "s" * 10_000}},
             401, "invalid_client"),
        ]  # fmt: skip
        for kwargs, status, error in cases:
            answer = await http.post("/aemp/token", **kwargs)  # type: ignore[arg-type]
            assert (answer.status_code, answer.json()["error"]) == (status, error), kwargs
            assert answer.headers["cache-control"] == "no-store"
            if status == 401:
                assert answer.headers["www-authenticate"].startswith("Basic")


async def test_junk_expired_and_revoked_tokens_are_refused(pool: asyncpg.Pool) -> None:
    customer = unique("AEMPR")
    await seed_fleet(pool, customer, unique("AER"), 1)
    async with api_client(pool) as http:
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer junk"},
            {"Authorization": "Bearer aemp.junk"},
            {"Authorization": "Bearer aemp." + "x" * 5000},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            answer = await http.get("/aemp/Fleet/1", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["content-type"] == "application/problem+json"
        # Expired: the database says so, whatever this process cached.
        expired = await access_token(http, customer)
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE aemp_access_tokens SET expires_at = now() - interval '1 second' "
                "WHERE client_id IN (SELECT client_id FROM aemp_clients WHERE customer_id = $1)",
                customer,
            )
        assert (await http.get("/aemp/Fleet/1", headers=expired)).status_code == 401
        # Revoked: its tokens stop at once, and it gets no new one.
        client_id, secret = await issue_client(http, customer)
        token = await http.post(
            "/aemp/token", data={"grant_type": "client_credentials"},
            headers=basic(client_id, secret),
        )  # fmt: skip
        live = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert (await http.get("/aemp/Fleet/1", headers=live)).status_code == 200
        revoked = await http.delete(f"/v1/aemp/clients/{client_id}", headers=ADMIN)
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        assert (await http.get("/aemp/Fleet/1", headers=live)).status_code == 401
        again = await http.post(
            "/aemp/token", data={"grant_type": "client_credentials"},
            headers=basic(client_id, secret),
        )  # fmt: skip
        assert again.status_code == 401
        assert (await http.delete("/v1/aemp/clients/aemp-nope", headers=ADMIN)).status_code == 404


async def test_product_tokens_read_the_feed_in_their_scope(pool: asyncpg.Pool) -> None:
    customer, prefix = unique("AEMPP"), unique("AEP")
    await seed_fleet(pool, customer, prefix, 2)
    async with pool.acquire() as conn:
        _, own = await create_token(conn, Role.CUSTOMER, customer, "fleet owner")
        _, other = await create_token(conn, Role.CUSTOMER, unique("AEMPQ"), "someone else")
        _, expert = await create_token(conn, Role.EXPERT, "ecc", "expert")
        await conn.execute(
            "INSERT INTO engineers (engineer_id, name) VALUES ('AEMP-ENG', 'E') "
            "ON CONFLICT DO NOTHING"
        )
        _, engineer = await create_token(conn, Role.ENGINEER, "AEMP-ENG", "engineer")
    machine = f"/aemp/Fleet/Equipment/ID/{prefix}-0000"
    async with api_client(pool) as http:
        for token, status in ((own, 200), (expert, 200), (other, 404), (engineer, 403)):
            answer = await http.get(machine, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == status, token
        assert (await http.get(machine, headers=ADMIN)).status_code == 200


async def test_a_client_past_its_burst_gets_429_with_retry_after(pool: asyncpg.Pool) -> None:
    customer = unique("AEMPL")
    settings = Settings(aemp_burst=3, aemp_rate_per_s=0.01)
    async with api_client(pool, settings=settings) as http:
        first, second = await access_token(http, customer), await access_token(http, customer)
        statuses = [(await http.get("/aemp/Fleet/1", headers=first)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await http.get("/aemp/Fleet/1", headers=first)
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) >= 60
        # Another client has its own bucket.
        assert (await http.get("/aemp/Fleet/1", headers=second)).status_code == 200
