"""schemathesis against the live OpenAPI: no 5xx, and every answer is documented.

A real uvicorn serves the app on a free port, from a thread with its own event loop and its own
throwaway database (fuzzed writes would otherwise land in the fleet other tests dispatch from).
Every generated request is sent twice, with an admin and with a customer token. The budget is a
few examples an operation, so the whole run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.service import prepare_database
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import ADMIN_DSN, _with_database, unique

ADMIN = "fuzz-admin-token"
EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class LiveApi:
    """The app under uvicorn in a thread of its own, on a database of its own."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._database = f"telematics_fuzz_{uuid.uuid4().hex[:8]}"
        self.url = ""
        self.customer_token = ""

    def __enter__(self) -> LiveApi:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    def __exit__(self, *_: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _start(self) -> None:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f"CREATE DATABASE {self._database}")
        finally:
            await admin.close()
        self._pool = await create_pool(_with_database(ADMIN_DSN, self._database), max_size=4)
        await prepare_database(self._pool, self._settings)
        customer = unique("FUZZC")
        async with self._pool.acquire() as conn:
            await add_machine(conn, unique("FUZZM"), "excavator", customer, Site(1.0, 2.0, 100))
            _, self.customer_token = await create_token(conn, Role.CUSTOMER, customer, "fuzz")
        app = create_app(
            ApiContext(
                pool=self._pool, directory=SourceDirectory(), metrics=Metrics(),
                admin_token=ADMIN, limits=Limits(), knowledge=KnowledgeBase.load(),
                rules=RuleBook.load(), gateway_connected=lambda: True,
            )
        )  # fmt: skip
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self._serving = asyncio.ensure_future(self._server.serve())
        while not self._server.started and not self._serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        self._server.should_exit = True
        await asyncio.wait_for(self._serving, 30)
        await asyncio.wait_for(self._pool.close(), 10)
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {self._database} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture(scope="module")
def live_api(settings: Settings) -> Iterator[LiveApi]:
    with LiveApi(settings) as api:
        yield api


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _fuzz(operation: APIOperation, api: LiveApi, session: requests.Session) -> None:
    # schemathesis' pytest plugin does not load under this pytest; hypothesis drives its
    # strategies directly instead, with the same checks.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        for token in (ADMIN, api.customer_token):
            case.call_and_validate(
                base_url=api.url,
                session=session,
                headers={"Authorization": f"Bearer {token}"},
                checks=CHECKS,
                timeout=30,
            )

    run()


@pytest.mark.slow
def test_the_api_answers_every_generated_request_as_documented(
    live_api: LiveApi, http_session: requests.Session
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz(operation, live_api, http_session)
        except (Exception, FailureGroup) as exc:
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert operations >= 40
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
