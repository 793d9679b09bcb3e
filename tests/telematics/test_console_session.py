"""The console's sign-in: a session cookie that stands for a token in the `/v1` API, CSRF-safe,
ended by sign-out and by revoking the token; its page, files and strings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from diagnosis.knowledge import KnowledgeBase
from telematics.api.session_cookie import COOKIE, SessionKeeper
from telematics.base.config import Settings
from telematics.base.metrics import Metrics
from telematics.base.pools import Pools
from telematics.console import language
from telematics.service import api_context
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import raise_alarm

KB = KnowledgeBase.load()
ORIGIN = "http://api"
I18N = Path(__file__).resolve().parents[2] / "src" / "telematics" / "console" / "i18n"


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool, knowledge=KB) as client:
        yield client


async def _token(pool: asyncpg.Pool, role: Role, subject: str) -> tuple[int, str]:
    async with pool.acquire() as conn:
        info, token = await create_token(conn, role, subject, "console test")
    return info.token_id, token


async def _machine_with_alarm(pool: asyncpg.Pool, customer: str) -> tuple[str, int]:
    machine = unique("CM")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", customer, Site(31.0, 121.0, 200))
        return machine, await raise_alarm(conn, machine)


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def _sign_in(http: httpx.AsyncClient, token: str) -> tuple[str, str]:
    """Signs in; the cookie value and the CSRF token."""
    answer = await http.post("/console/session", json={"token": token}, headers={"Origin": ORIGIN})
    assert answer.status_code == 200, answer.text
    return answer.cookies[COOKIE], answer.json()["csrf_token"]


async def test_sign_in_sets_an_httponly_strict_cookie_that_is_not_the_token(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, token = await _token(pool, Role.CUSTOMER, unique("CC"))
    answer = await http.post("/console/session", json={"token": token})
    assert answer.status_code == 200
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header
    assert "Path=/" in header
    assert "Secure" not in header  # plain http here; https adds it
    assert token not in header
    assert answer.json()["role"] == "customer"


async def test_an_unknown_token_does_not_sign_in(http: httpx.AsyncClient) -> None:
    answer = await http.post("/console/session", json={"token": "not-a-token"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "body",
    [{"token": "a\x00b"}, {"token": ""}, {"token": "x" * 1001}, {"token": 5}, {"tok": "x"}, []],
)
async def test_junk_sign_in_bodies_are_refused(http: httpx.AsyncClient, body: object) -> None:
    assert (await http.post("/console/session", json=body)).status_code == 422


async def test_sign_in_from_another_origin_is_refused(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/console/session", json={"token": ADMIN_TOKEN}, headers={"Origin": "http://evil.example"}
    )
    assert answer.status_code == 403


async def test_the_cookie_speaks_for_its_token_in_the_api_with_the_same_scope(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    mine, other = unique("CC"), unique("CC")
    _, own_alarm = await _machine_with_alarm(pool, mine)
    _, their_alarm = await _machine_with_alarm(pool, other)
    _, token = await _token(pool, Role.CUSTOMER, mine)
    cookie, _ = await _sign_in(http, token)
    http.cookies.clear()
    page = await http.get("/v1/alarms", headers=_cookie(cookie))
    assert page.status_code == 200
    assert page.json()["view"] == "customer"
    assert {a["alarm_id"] for a in page.json()["alarms"]} == {own_alarm}
    assert (await http.get(f"/v1/alarms/{their_alarm}", headers=_cookie(cookie))).status_code == 404
    # A customer may not act on alarms, with a cookie as with a bearer token.
    _, csrf = await _sign_in(http, token)
    acked = await http.post(f"/v1/alarms/{own_alarm}/ack", headers={"X-CSRF-Token": csrf})
    assert acked.status_code == 403


async def test_state_changing_calls_need_the_csrf_token_and_the_same_origin(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, alarm_id = await _machine_with_alarm(pool, unique("CC"))
    _, token = await _token(pool, Role.EXPERT, unique("expert"))
    _, csrf = await _sign_in(http, token)
    path = f"/v1/alarms/{alarm_id}/ack"
    assert (await http.post(path)).status_code == 403
    assert (await http.post(path, headers={"X-CSRF-Token": "wrong"})).status_code == 403
    for header in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert (await http.post(path, headers={"X-CSRF-Token": csrf, **header})).status_code == 403
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT acknowledged_at FROM alarms WHERE alarm_id = $1", alarm_id)
            is None
        )
    answer = await http.post(
        path, headers={"X-CSRF-Token": csrf, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
    )
    assert answer.status_code == 200
    assert answer.json()["acknowledged_by"].startswith("expert:")
    # Reading needs no CSRF token.
    assert (await http.get(f"/v1/alarms/{alarm_id}")).status_code == 200


async def test_a_bearer_caller_needs_no_csrf_token(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, alarm_id = await _machine_with_alarm(pool, unique("CC"))
    answer = await http.post(
        f"/v1/alarms/{alarm_id}/ack", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert answer.status_code == 200


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, token = await _token(pool, Role.EXPERT, unique("expert"))
    cookie, _ = await _sign_in(http, token)
    assert (await http.get("/console/session")).json()["signed_in"] is True
    out = await http.delete("/console/session", headers={"Origin": ORIGIN})
    assert out.status_code == 204
    assert COOKIE not in http.cookies
    http.cookies.clear()
    assert (await http.get("/v1/alarms", headers=_cookie(cookie))).status_code == 401
    session = await http.get("/console/session", headers=_cookie(cookie))
    assert session.json() == {
        "signed_in": False, "role": None, "subject_id": None, "csrf_token": None,
        "expires_at": None,
    }  # fmt: skip


async def test_revoking_the_token_ends_its_sessions(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    token_id, token = await _token(pool, Role.EXPERT, unique("expert"))
    await _sign_in(http, token)
    assert (await http.get("/v1/alarms")).status_code == 200
    revoked = await http.delete(
        f"/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert revoked.status_code in (200, 204), revoked.text
    assert (await http.get("/v1/alarms")).status_code == 401
    assert (await http.get("/console/session")).json()["signed_in"] is False


@pytest.mark.parametrize(
    "value",
    ["", "junk", "v1.a.b.c.d", "v1." * 300, "\u00e9" * 10, "a\x00b", "x" * 100_000],
)
async def test_forged_or_junk_cookies_are_refused(http: httpx.AsyncClient, value: str) -> None:
    http.cookies.clear()
    sent = {"Cookie": f"{COOKIE}={value}".encode()}
    answer = await http.get("/v1/alarms", headers=sent)
    assert answer.status_code in (400, 401)
    session = await http.get("/console/session", headers=sent)
    assert session.status_code in (200, 400)
    if session.status_code == 200:
        assert session.json()["signed_in"] is False


async def test_a_cookie_signed_with_another_key_or_edited_is_refused(
    http: httpx.AsyncClient,
) -> None:
    forged, _ = SessionKeeper().issue(ADMIN_TOKEN)
    assert (await http.get("/v1/alarms", headers=_cookie(forged))).status_code == 401
    cookie, _ = await _sign_in(http, ADMIN_TOKEN)
    http.cookies.clear()
    body, _, mac = cookie.rpartition(".")
    version, sid, digest, expires = body.split(".")
    longer = f"{version}.{sid}.{digest}.{int(expires) + 10**6}.{mac}"
    assert (await http.get("/v1/alarms", headers=_cookie(longer))).status_code == 401
    assert (await http.get("/v1/alarms", headers=_cookie(cookie))).status_code == 200


def test_an_expired_session_is_refused() -> None:
    now = [1_000_000.0]
    keeper = SessionKeeper(b"k" * 32, lifetime_s=60, clock=lambda: now[0])
    value, _ = keeper.issue("token")
    assert keeper.read(value) is not None
    now[0] += 61
    assert keeper.read(value) is None


async def test_the_page_and_its_files_keep_to_this_host(http: httpx.AsyncClient) -> None:
    page = await http.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    for name in ("app.js", "uplot.js", "console.css", "uplot.css"):
        found = await http.get(f"/console/assets/{name}")
        assert found.status_code == 200, name
        assert found.headers["x-content-type-options"] == "nosniff"
    for name in ("index.html", "..%2f..%2fpyproject.toml", "vendor%2fuplot.js", "nope.js"):
        assert (await http.get(f"/console/assets/{name}")).status_code == 404


@pytest.mark.parametrize(
    ("header", "cookie", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh-CN"),
        ("en-US,en;q=0.9", None, "en"),
        ("fr-FR, zh;q=0.5, en;q=0.4", None, "zh-CN"),
        ("zh-TW", None, "en"),
        ("zh-CN", "en", "en"),
        ("en", "zh-CN", "zh-CN"),
        ("\x7f;;q=abc,,,", "klingon", "en"),
        (None, None, "en"),
    ],
)
async def test_the_language_is_the_saved_one_else_the_browsers(
    http: httpx.AsyncClient, header: str | None, cookie: str | None, lang: str
) -> None:
    headers = {} if header is None else {"Accept-Language": header}
    if cookie is not None:
        headers["Cookie"] = f"{language.LANG_COOKIE}={cookie}"
    http.cookies.clear()
    answer = await http.get("/console/strings", headers=headers)
    assert answer.status_code == 200
    assert answer.json()["lang"] == lang
    assert answer.json()["strings"]["app.title"] == language.strings(lang)["app.title"]


def test_every_language_has_every_string() -> None:
    files = {p.stem: json.loads(p.read_text("utf-8")) for p in I18N.glob("*.json")}
    assert set(files) == set(language.LANGUAGES)
    english = files["en"]
    for lang, strings in files.items():
        assert strings.keys() == english.keys(), lang
        assert all(isinstance(v, str) and v for v in strings.values()), lang
    assert files["zh-CN"]["nav.alarms"] != english["nav.alarms"]


def test_processes_sharing_the_console_secret_honour_each_others_sessions() -> None:
    def keeper(**settings: object) -> SessionKeeper:
        pools = Pools(ingest=None, api=None, jobs=None)  # type: ignore[arg-type]
        ctx = api_context(Settings(**settings), pools, SourceDirectory(), Metrics(), "t")  # type: ignore[arg-type]
        return ctx.sessions

    value, _ = keeper(console_secret="shared", console_session_s=120).issue("t")
    assert keeper(console_secret="shared").read(value) is not None
    assert keeper(console_secret="another").read(value) is None
    assert keeper().read(value) is None  # unset: a random key of its own


def test_signed_out_sessions_are_remembered_until_they_expire_and_boundedly() -> None:
    now = [1_000_000.0]
    keeper = SessionKeeper(b"k" * 32, lifetime_s=60, clock=lambda: now[0])
    first, session = keeper.issue("token")
    keeper.end(session)
    now[0] += 61
    for _ in range(3000):  # enough to prune: the expired first one is forgotten, not kept
        keeper.end(keeper.issue("token")[1])
    assert keeper.read(first) is None  # expired anyway
    assert session.session_id not in keeper._ended
    assert len(keeper._ended) <= 3000
    value, later = keeper.issue("token")
    keeper.end(later)
    assert keeper.read(value) is None
