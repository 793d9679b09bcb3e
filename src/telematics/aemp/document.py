"""Snapshot and series pages as ISO 15143-3 documents, XML or JSON. Pure: no I/O library.

XML is built with the standard library's ElementTree, in the standard's namespace
(`NAMESPACE`, the one published AEMP 2.0 feeds use) as the default namespace; ElementTree does
the escaping and every text goes through `xmltext.xml_safe` first, so no value can break or
forge markup. JSON has the same shape: an element's children become keys, its `datetime`
attribute a `datetime` key, repeated elements a list.

Paging follows the standard: 100 records a page, pages numbered from 1, `Links` with `rel`
`self`, `first`, `prev` (not on page 1), `next` (not on the last page) and `last`, each with an
absolute `href`. A page past the last is an empty list, still with its links.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telematics.aemp.elements import Element, Value
from telematics.aemp.xmltext import utc_text, xml_safe

NAMESPACE = "http://standards.iso.org/iso/15143/-3"
VERSION = "2"
PAGE_SIZE = 100
XML_MEDIA_TYPE = "application/xml"


@dataclass(frozen=True, slots=True)
class Link:
    """One navigation link of a page."""

    rel: str
    href: str


def last_page(total: int, page_size: int = PAGE_SIZE) -> int:
    """The number of the last page for `total` records (1 when there are none)."""
    return max(1, math.ceil(total / page_size))


def page_links(page: int, total: int, href: Callable[[int], str]) -> list[Link]:
    """`self`, `first`, `prev`, `next`, `last` of page `page` of `total` records.

    `prev` of a page past the last is the last page, so a client that overshot finds its way
    back; `next` is there only while a later page has records.
    """
    last = last_page(total)
    links = [Link("self", href(page)), Link("first", href(1))]
    if page > 1:
        links.append(Link("prev", href(min(page - 1, last))))
    if page < last:
        links.append(Link("next", href(page + 1)))
    links.append(Link("last", href(last)))
    return links


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return xml_safe(value)
    return repr(value) if isinstance(value, float) else str(value)


def _json_value(value: Value) -> Value:
    return xml_safe(value) if isinstance(value, str) else value


def _root(name: str, snapshot_time: datetime) -> ET.Element:
    # Elements are unqualified: the root declares the standard's namespace as the default one,
    # which every element then belongs to (ElementTree's `default_namespace` refuses the
    # unqualified attributes such as `datetime`, so the declaration is the root's attribute).
    return ET.Element(
        name,
        {"xmlns": NAMESPACE, "version": VERSION, "snapshotTime": utc_text(snapshot_time)},
    )


def _add_links(parent: ET.Element, links: Sequence[Link]) -> None:
    for link in links:
        node = ET.SubElement(parent, "Links")
        ET.SubElement(node, "rel").text = link.rel
        ET.SubElement(node, "href").text = xml_safe(link.href)


def _add_element(parent: ET.Element, element: Element) -> None:
    attrs = {} if element.ts is None else {"datetime": utc_text(element.ts)}
    node = ET.SubElement(parent, element.name, attrs)
    for name, value in element.fields:
        ET.SubElement(node, name).text = _text(value)


def _serialize(root: ET.Element) -> bytes:
    # Serialised to text, then encoded once: ElementTree's byte output goes through an encoder
    # per write (about half its time). No declaration: UTF-8 is XML's default encoding.
    return ET.tostring(root, encoding="unicode").encode("utf-8")


def _element_json(element: Element) -> dict[str, Any]:
    body: dict[str, Any] = {} if element.ts is None else {"datetime": utc_text(element.ts)}
    body.update((name, _json_value(value)) for name, value in element.fields)
    return body


def _links_json(links: Sequence[Link]) -> list[dict[str, str]]:
    return [{"rel": link.rel, "href": xml_safe(link.href)} for link in links]


def _equipment_json(elements: Sequence[Element]) -> dict[str, Any]:
    return {element.name: _element_json(element) for element in elements}


def fleet_xml(
    snapshot_time: datetime, links: Sequence[Link], fleet: Sequence[Sequence[Element]]
) -> bytes:
    """`Fleet`: one `Equipment` per machine, each its header first, then its elements."""
    root = _root("Fleet", snapshot_time)
    _add_links(root, links)
    for elements in fleet:
        equipment = ET.SubElement(root, "Equipment")
        for element in elements:
            _add_element(equipment, element)
    return _serialize(root)


def fleet_json(
    snapshot_time: datetime, links: Sequence[Link], fleet: Sequence[Sequence[Element]]
) -> dict[str, Any]:
    """`fleet_xml` as JSON."""
    return {
        "version": VERSION,
        "snapshotTime": utc_text(snapshot_time),
        "Links": _links_json(links),
        "Equipment": [_equipment_json(elements) for elements in fleet],
    }


def equipment_xml(snapshot_time: datetime, elements: Sequence[Element]) -> bytes:
    """`Equipment`: one machine's snapshot, the root of `/Fleet/Equipment/ID/{id}`."""
    root = _root("Equipment", snapshot_time)
    for element in elements:
        _add_element(root, element)
    return _serialize(root)


def equipment_json(snapshot_time: datetime, elements: Sequence[Element]) -> dict[str, Any]:
    """`equipment_xml` as JSON."""
    return {
        "version": VERSION,
        "snapshotTime": utc_text(snapshot_time),
        **_equipment_json(elements),
    }


def series_xml(
    name: str,
    snapshot_time: datetime,
    links: Sequence[Link],
    header: Element,
    points: Sequence[Element],
) -> bytes:
    """A time series page: root named after the series, its links, the machine's header, then
    one element per point, oldest first.
    """
    root = _root(name, snapshot_time)
    _add_links(root, links)
    _add_element(root, header)
    for point in points:
        _add_element(root, point)
    return _serialize(root)


def series_json(
    name: str,
    item: str,
    snapshot_time: datetime,
    links: Sequence[Link],
    header: Element,
    points: Sequence[Element],
) -> dict[str, Any]:
    """`series_xml` as JSON: the points are a list under the item's name."""
    return {
        "version": VERSION,
        "snapshotTime": utc_text(snapshot_time),
        "series": name,
        "Links": _links_json(links),
        "EquipmentHeader": _element_json(header),
        item: [_element_json(point) for point in points],
    }
