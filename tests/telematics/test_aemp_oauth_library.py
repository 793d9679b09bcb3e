"""A real OAuth 2.0 library (Authlib, which knows nothing of this code) gets a client
credentials token from `/aemp/token` and reads the feed with it. No AEMP client library installs
from the package registries, so the feed's documents are checked with lxml elsewhere.
"""

from __future__ import annotations

import warnings

import asyncpg
import httpx
import pytest
from lxml import etree

from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store.registry import SourceDirectory
from telematics.web import build_app
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.aemp_world import NS, issue_client, seed_fleet
from tests.telematics.harness import ADMIN_TOKEN


@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
async def test_authlib_gets_a_token_by_client_credentials_and_reads_the_fleet(
    pool: asyncpg.Pool,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Authlib deprecates its httpx module for another
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: PLC0415
    customer = unique("AEMPO")
    await seed_fleet(pool, customer, unique("AEL"), 3)
    app = build_app(
        ApiContext(pool=pool, directory=SourceDirectory(), metrics=Metrics(),
                   admin_token=ADMIN_TOKEN, limits=Limits())
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        client_id, secret = await issue_client(http, customer)
    for method in ("client_secret_basic", "client_secret_post"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            async with AsyncOAuth2Client(
                client_id, secret, token_endpoint_auth_method=method, transport=transport
            ) as client:
                token = await client.fetch_token(
                    "http://api/aemp/token", grant_type="client_credentials"
                )
                assert token["token_type"].lower() == "bearer"
                assert token["expires_in"] == 3600
                answer = await client.get("http://api/aemp/Fleet/1")
        assert answer.status_code == 200, method
        root = etree.fromstring(answer.content)
        assert len(root.findall(f"{{{NS}}}Equipment")) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with AsyncOAuth2Client(client_id, "wrong", transport=transport) as client:
            try:
                await client.fetch_token("http://api/aemp/token", grant_type="client_credentials")
            except Exception as exc:  # Authlib raises its OAuthError with the RFC's code
                assert getattr(exc, "error", None) == "invalid_client"  # noqa: PT017
            else:
                raise AssertionError("a wrong secret got a token")
