"""The AEMP package's pure parts, without any server: token buckets, content negotiation,
text XML can hold, and the dialect reader against hostile input.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from telematics.aemp import document, elements
from telematics.aemp.dialects import UnreadableFeedError, read_page
from telematics.aemp.feed import wants_json
from telematics.aemp.ratelimit import TokenBuckets
from telematics.aemp.xmltext import parse_utc, xml_safe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # one request every 0.5 s
    assert buckets.take("b") == 0.0  # its own bucket
    clock.now = 0.5
    assert buckets.take("a") == 0.0
    clock.now = 100.0
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_buckets_stay_bounded_under_a_flood_of_keys() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 5, clock=clock, max_keys=100)
    for i in range(1000):
        clock.now = i / 1000
        buckets.take(f"k{i}")
    assert len(buckets._buckets) <= 101


def test_json_only_when_the_client_prefers_it() -> None:
    assert wants_json("application/json")
    assert wants_json("application/json, text/plain, */*")
    assert wants_json("application/xml;q=0.5, application/json")
    assert not wants_json(None)
    assert not wants_json("")
    assert not wants_json("*/*")
    assert not wants_json("application/xml, application/json")
    assert not wants_json("application/json;q=0")
    assert not wants_json("application/json;q=junk")
    assert not wants_json("," * 10_000)


def test_instants_in_the_path() -> None:
    assert parse_utc("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_utc("2026-01-02T05:04:05+02:00") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_utc("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    for bad in ("", "now", "2026-13-01", "0001-01-01T00:00:00+01:00", "9" * 41):
        assert parse_utc(bad) is None


@given(st.text())
def test_any_text_reaches_the_document_as_xml_can_hold_it(text: str) -> None:
    header = elements.header(elements.HeaderValues("M-1", text, text or None, None))
    body = document.equipment_xml(datetime(2026, 1, 1, tzinfo=UTC), [header])
    root = etree.fromstring(body)  # a conforming parser that knows nothing of this code
    model = root.find(f"{{{document.NAMESPACE}}}EquipmentHeader/{{{document.NAMESPACE}}}Model")
    assert model is not None
    # XML normalises line ends; everything else arrives as xml_safe wrote it.
    assert (model.text or "") == xml_safe(text).replace("\r\n", "\n").replace("\r", "\n")
    orjson.dumps(document.equipment_json(datetime(2026, 1, 1, tzinfo=UTC), [header]))


def test_page_links_of_the_first_middle_last_and_past_pages() -> None:
    def rels(page: int, total: int) -> dict[str, str]:
        return {l.rel: l.href for l in document.page_links(page, total, lambda n: f"/F/{n}")}  # noqa: E741

    assert rels(1, 0) == {"self": "/F/1", "first": "/F/1", "last": "/F/1"}
    assert rels(1, 250) == {"self": "/F/1", "first": "/F/1", "next": "/F/2", "last": "/F/3"}
    assert rels(3, 250) == {"self": "/F/3", "first": "/F/1", "prev": "/F/2", "last": "/F/3"}
    assert rels(9, 250)["prev"] == "/F/3"
    assert "next" not in rels(9, 250)
    assert rels(2, 200) == {"self": "/F/2", "first": "/F/1", "prev": "/F/1", "last": "/F/2"}


scalars = (
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Equipment", "EquipmentHeader", "PIN", "Location", "datetime",
                         "Latitude", "Longitude", "Links", "rel", "href", "Hour", "Running",
                         "FuelRemaining", "Percent", "FuelTankCapacity", "EngineStatus",
                         "CumulativeOperatingHours", "x"]),
        inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_reader_reads_or_refuses_any_json(doc: object) -> None:
    try:
        page = read_page(orjson.dumps(doc), "application/json")
    except UnreadableFeedError:
        return
    for equipment in page.equipment:
        assert equipment.key
        for ts, signals in equipment.readings.items():
            assert ts.tzinfo is not None
            assert all(isinstance(v, float | bool) for v in signals.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_the_reader_reads_or_refuses_any_bytes(body: bytes) -> None:
    for content_type in ("application/xml", "application/json", ""):
        with contextlib.suppress(UnreadableFeedError):
            read_page(body, content_type)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep_xml = b"<Fleet><Equipment>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</Equipment></Fleet>"
    deep_json = b'{"Equipment": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    for body in (deep_xml, deep_json):
        with contextlib.suppress(UnreadableFeedError):
            read_page(body)
    ET.fromstring(b"<ok/>")
