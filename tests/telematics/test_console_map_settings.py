"""The console's map draws tiles only where an operator named a tile server: by default the
page may load images from its own origin alone, and with a server set, from that origin too."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from telematics.base.config import Settings
from tests.telematics.harness import api_client

TILES = "https://tiles.example.net/osm/{z}/{x}/{y}.png"


async def test_without_a_tile_server_the_page_loads_images_from_itself_alone(
    pool: asyncpg.Pool,
) -> None:
    async with api_client(pool) as http:
        csp = (await http.get("/console")).headers["content-security-policy"]
        config = (await http.get("/console/config")).json()
    assert "img-src 'self' data:;" in csp
    assert config == {"tile_url": None, "tile_attribution": ""}


async def test_a_configured_tile_server_is_named_in_the_policy_and_the_config(
    pool: asyncpg.Pool,
) -> None:
    settings = Settings(console_tile_url=TILES, console_tile_attribution="© Example")
    async with api_client(pool, settings=settings) as http:
        csp = (await http.get("/console")).headers["content-security-policy"]
        config = (await http.get("/console/config")).json()
    assert "img-src 'self' data: https://tiles.example.net;" in csp
    assert "connect-src 'self';" in csp  # images only: scripts still cannot call it
    assert config == {"tile_url": TILES, "tile_attribution": "© Example"}


@pytest.mark.parametrize(
    "url", ["ftp://tiles.example.net/{z}/{x}/{y}.png", "https://tiles.example.net/{z}/{x}.png"]
)
def test_a_tile_url_must_be_http_with_z_x_and_y(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(console_tile_url=url)
