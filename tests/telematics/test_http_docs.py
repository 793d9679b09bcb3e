"""The OpenAPI pages work without internet: every asset they load is served by the app itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import Limits

BASE = "http://api"


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def referenced(html: str) -> list[str]:
    """Every URL the page loads: src/href attributes and the strings handed to Swagger UI."""
    parser = _Assets()
    parser.feed(html)
    urls = list(parser.urls)
    for marker in ("url: '", 'url: "', 'spec-url="', "spec-url='"):
        start = 0
        while (found := html.find(marker, start)) >= 0:
            begin = found + len(marker)
            end = html.index(marker[-1], begin)
            urls.append(html[begin:end])
            start = end
    return urls


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiContext(pool=None, directory=SourceDirectory(), metrics=Metrics(), admin_token="x",
                   limits=Limits())  # type: ignore[arg-type]
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_load_every_asset_from_the_app_itself(
    http: httpx.AsyncClient, page: str
) -> None:
    answer = await http.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    urls = referenced(answer.text)
    assert any(u.endswith(".js") for u in urls), urls
    assert any("favicon" in u for u in urls), urls
    for url in urls:
        absolute = urljoin(f"{BASE}{page}", url)
        assert urlsplit(absolute).netloc == "api", f"{page} loads {url} from another host"
        asset = await http.get(absolute)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "openapi.json" in " ".join(urls)


async def test_swagger_ui_does_not_call_the_online_validator(http: httpx.AsyncClient) -> None:
    html = (await http.get("/docs")).text
    assert '"validatorUrl": null' in html
