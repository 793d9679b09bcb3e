"""Fleet pages of other manufacturers' AEMP feeds, read whatever dialect they speak. Pure: no
I/O library is imported here.

`read_page(body, content_type)` turns one `Fleet` page, XML or JSON, into `PulledEquipment`
values and the page's links, tolerating what real feeds do:

* any namespace (the ISO one, a dated one, none): elements are matched by local name, and
  names case-insensitively (`Equipment`/`equipment`, `Links`/`links`, `rel`/`Rel`, `href`/`Href`);
* `datetime` as an attribute or as a child element (`<datetime>`, `<DateTime>`), with or without
  fractional seconds, `Z` or an offset; an instant before 1990 (`0001-01-01T00:00:00Z`) is a
  placeholder, not a time;
* attribute-style elements (`<Location datetime=".." Latitude=".." Longitude=".."/>`);
* placeholders for absent values (`missing`, `N/A`, `-`, `null`, `NaN`, empty), a tank capacity
  of 0, empty OEM or model names: all read as absent.

What cannot be read at all (not XML or JSON, a DTD, no `Fleet` root) raises `UnreadableFeedError`;
an `Equipment` that cannot be identified (no PIN, serial number or equipment id) or whose values
are unreadable becomes a `Problem` with its own bytes, so the caller dead-letters it and keeps
the rest of the page.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

PLACEHOLDERS = frozenset({"", "missing", "n/a", "na", "-", "--", "null", "none", "nan", "unknown"})
OLDEST = datetime(1990, 1, 1, tzinfo=UTC)
MAX_TEXT = 200


class UnreadableFeedError(Exception):
    """A page that is no AEMP fleet page at all: the reason says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PulledEquipment:
    """One machine of a pulled page.

    Attributes:
        key: What identifies it at the source: its PIN, else its serial number, else its
            equipment id.
        oem: Manufacturer, None when the feed left it empty.
        model: Model designation, None when empty.
        serial_number: The serial number or PIN as the feed gives it.
        fuel_tank_l: Tank size in litres, None when absent or 0.
        readings: Signals by the instant they were read, wire names (`lat`, `lon`,
            `engine_hours`, `fuel_level_pct`, and `aemp_running` kept as an extra).
    """

    key: str
    oem: str | None
    model: str | None
    serial_number: str | None
    fuel_tank_l: float | None
    readings: dict[datetime, dict[str, float | bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Problem:
    """An `Equipment` that could not be read: its own bytes and why."""

    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class PulledPage:
    """One page: its machines, the ones that could not be read, and its links by rel."""

    equipment: list[PulledEquipment]
    problems: list[Problem]
    links: dict[str, str]


# --- values -------------------------------------------------------------------------------


def _absent(text: str) -> bool:
    return text.strip().lower() in PLACEHOLDERS


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if _absent(text):
            return None
        try:
            number = float(text)
        except ValueError as exc:
            raise ValueError(f"not a number: {text[:40]!r}") from exc
    if not math.isfinite(number):
        return None
    return number


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    if _absent(text):
        return None
    raise ValueError(f"not a boolean: {text[:40]!r}")


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    if _absent(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not an instant: {text[:40]!r}") from exc
    return None if parsed < OLDEST else parsed


def _name(value: object) -> str | None:
    if value is None:
        return None
    # Control characters, lone surrogates and the like go (the store cannot hold NUL, and no
    # name needs them); runs of blanks become one space.
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value)).split())
    if _absent(text):
        return None
    return text[:MAX_TEXT] or None


# --- a format-neutral view of an element ----------------------------------------------------


class _Node:
    """An element (XML) or object (JSON), its children and attributes by lower-case name."""

    def __init__(self, fields: dict[str, list[Any]]) -> None:
        self.fields = fields

    def get(self, name: str) -> Any:
        values = self.fields.get(name.lower())
        return values[0] if values else None

    def all(self, name: str) -> list[Any]:
        return self.fields.get(name.lower(), [])


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def _xml_node(element: ET.Element) -> _Node:
    fields: dict[str, list[Any]] = {}
    for key, attr in element.attrib.items():
        fields.setdefault(_local(key), []).append(attr)
    for child in element:
        value: Any = _xml_node(child) if len(child) or child.attrib else (child.text or "")
        fields.setdefault(_local(child.tag), []).append(value)
    return _Node(fields)


def _json_node(obj: dict[str, Any]) -> _Node:
    fields: dict[str, list[Any]] = {}
    for key, value in obj.items():
        items = value if isinstance(value, list) else [value]
        fields.setdefault(str(key).lower(), []).extend(
            _json_node(item) if isinstance(item, dict) else item for item in items
        )
    return _Node(fields)


def _text_of(value: Any) -> Any:
    """A leaf's value; an element written with attributes only gives its `value` or text."""
    if isinstance(value, _Node):
        return value.get("value")
    return value


# --- equipment ----------------------------------------------------------------------------

# element -> ((child, signal, kind), ...): kind "n" number, "b" boolean
_ELEMENTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "location": (("latitude", "lat", "n"), ("longitude", "lon", "n")),
    "cumulativeoperatinghours": (("hour", "engine_hours", "n"),),
    "fuelremaining": (("percent", "fuel_level_pct", "n"),),
    "enginestatus": (("running", "aemp_running", "b"),),
}


def _signals(element: str, value: _Node) -> tuple[dict[str, float | bool], float | None]:
    """The signals one element carries, and the tank size (FuelRemaining only)."""
    signals: dict[str, float | bool] = {}
    for child, signal, kind in _ELEMENTS[element]:
        raw = _text_of(value.get(child))
        read = _number(raw) if kind == "n" else _flag(raw)
        if read is not None:
            signals[signal] = read
    if element == "location" and ("lat" not in signals or "lon" not in signals):
        signals.pop("lat", None)
        signals.pop("lon", None)
    tank_l = None
    if element == "fuelremaining":
        capacity = _number(_text_of(value.get("fueltankcapacity")))
        tank_l = capacity if capacity is not None and capacity > 0 else None
    return signals, tank_l


def _equipment(node: _Node) -> PulledEquipment:
    header = node.get("equipmentheader")
    if not isinstance(header, _Node):
        header = _Node({})
    pin = _name(_text_of(header.get("pin")))
    serial = _name(_text_of(header.get("serialnumber")))
    equipment_id = _name(_text_of(header.get("equipmentid")))
    key = pin or serial or equipment_id
    if key is None:
        raise ValueError("no PIN, SerialNumber or EquipmentID")
    readings: dict[datetime, dict[str, float | bool]] = {}
    tank_l = None
    for element in _ELEMENTS:
        value = node.get(element)
        if not isinstance(value, _Node):
            continue
        ts = _instant(_text_of(value.get("datetime")))
        signals, tank = _signals(element, value)
        tank_l = tank_l if tank is None else tank
        if ts is not None and signals:  # no time, or a placeholder: nothing to store it at
            readings.setdefault(ts, {}).update(signals)
    return PulledEquipment(
        key=key,
        oem=_name(_text_of(header.get("oemname"))),
        model=_name(_text_of(header.get("model"))),
        serial_number=pin or serial,
        fuel_tank_l=tank_l,
        readings=readings,
    )


def _links(root: _Node) -> dict[str, str]:
    links: dict[str, str] = {}
    for link in root.all("links"):
        if isinstance(link, _Node):
            rel, href = _text_of(link.get("rel")), _text_of(link.get("href"))
            if isinstance(rel, str) and isinstance(href, str) and href.strip():
                links.setdefault(rel.strip().lower(), href.strip())
    return links


def _read(root: _Node, raw_items: Iterator[bytes]) -> PulledPage:
    equipment: list[PulledEquipment] = []
    problems: list[Problem] = []
    for item, raw in zip(root.all("equipment"), raw_items, strict=False):
        if not isinstance(item, _Node):
            problems.append(Problem(raw, "an Equipment that is not an element"))
            continue
        try:
            equipment.append(_equipment(item))
        except ValueError as exc:
            problems.append(Problem(raw, str(exc)))
    return PulledPage(equipment, problems, _links(root))


def _looks_json(body: bytes, content_type: str) -> bool:
    if "json" in content_type.lower():
        return True
    return body.lstrip()[:1] in (b"{", b"[")


def read_page(body: bytes, content_type: str = "") -> PulledPage:
    """One fleet page, XML or JSON (by content type, else by its first character).

    Raises:
        UnreadableFeedError: Not a fleet page in either format.
    """
    try:
        return _read_page(body, content_type)
    except RecursionError as exc:  # nesting no fleet page has (elements are 3 deep)
        raise UnreadableFeedError("elements nested too deep") from exc


def _read_page(body: bytes, content_type: str) -> PulledPage:
    if _looks_json(body, content_type):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UnreadableFeedError(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise UnreadableFeedError("the JSON is not an object")
        fleet = {str(k).lower(): v for k, v in doc.items()}.get("fleet", doc)
        if not isinstance(fleet, dict):
            raise UnreadableFeedError("Fleet is not an object")
        root = _json_node(fleet)
        items = root.all("equipment")
        return _read(root, iter(_json_bytes(i) for i in _raw_json(fleet, items)))
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        raise UnreadableFeedError("a document type declaration (AEMP feeds have none)")
    try:
        element = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entities
    except ET.ParseError as exc:
        raise UnreadableFeedError(f"not XML: {exc}") from exc
    if _local(element.tag) != "fleet":
        raise UnreadableFeedError(f"the root is {_local(element.tag)!r}, not Fleet")
    root = _xml_node(element)
    raws = (ET.tostring(e) for e in element if _local(str(e.tag)) == "equipment")
    return _read(root, raws)


def _json_bytes(item: Any) -> bytes:
    """An equipment's own JSON, for its dead letter (orjson writes at most 255 levels)."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return b'"an Equipment nested too deep to write back"'


def _raw_json(fleet: dict[str, Any], items: list[Any]) -> list[Any]:
    for key, value in fleet.items():
        if str(key).lower() == "equipment":
            return value if isinstance(value, list) else [value]
    return items
