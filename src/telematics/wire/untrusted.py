"""Untrusted JSON text: bytes to a document, what of it the store can hold, and safe detail text.

Owns three things the decoder needs at the boundary of untrusted input:

* `parse_json`: payload bytes to a JSON document with orjson, and only orjson. What orjson
  refuses is diagnosed (NaN, a number too large for float8, a lone surrogate, nesting beyond the
  parser, not UTF-8) but never accepted from another parser: the standard library's `json` takes
  lone surrogates, integers of any size and UTF-8-encoded surrogates, none of which PostgreSQL
  can hold. A byte order mark or UTF-16/32 text is transcoded to UTF-8 and parsed by orjson again.
* `extra_json`, `check_kept`: a value kept as sent (an unknown key's value, a dtc entry's extra
  fields) must be text and numbers `jsonb` can hold: no NUL character, nested at most
  `MAX_EXTRA_DEPTH` levels. orjson's documents hold no lone surrogates and no non-finite
  numbers, so those need no check.
* `storable` and `shown`: text for a dead letter's detail, escaped so that quoting a hostile
  value (NUL, a lone surrogate) cannot make the dead letter itself unstorable, and bounded.

Pure: no I/O. `RefusedError` is control flow inside this package and never escapes
`telematics.wire.decode.decode_message`.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from telematics.wire.decoded import RejectReason

MAX_EXTRA_DEPTH = 32
"""Deepest nesting of a value kept as sent; deeper is refused as `bad_structure`."""

_DETAIL_MAX_CHARS = 500
_SHOWN_MAX_CHARS = 80


class RefusedError(Exception):
    """A reading or payload is refused. Never escapes `decode_message`."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def storable(text: str, limit: int = _DETAIL_MAX_CHARS) -> str:
    """`text` as PostgreSQL can hold it: NUL and lone surrogates escaped, at most `limit` chars."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isascii():
        return text.replace("\x00", "\\x00") if "\x00" in text else text
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def unforeseen(exc: Exception) -> str:
    """The detail for an exception nobody foresaw: its class, where it was raised, its text."""
    where = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):  # reads no source file, unlike
        where = f" at {Path(frame.f_code.co_filename).name}:{line}"  # extract_tb
    return storable(f"{type(exc).__name__}{where}: {exc}")


def shown(value: object) -> str:
    """A short, storable rendering of a hostile value for a detail: scalars quoted, else a type.

    Never `repr` of a container: one nested 1,000 levels deep would raise `RecursionError`.
    """
    if value is None or type(value) in (str, int, float, bool):
        text = repr(value)
        if len(text) > _SHOWN_MAX_CHARS:
            text = text[: _SHOWN_MAX_CHARS - 3] + "..."
        return text
    return type(value).__name__


def _bad_text(what: str, key: str | None, text: str) -> RefusedError:
    return RefusedError(
        RejectReason.BAD_TEXT,
        f"{_name(what, key)}: {shown(text)} holds a NUL character, which the store refuses",
    )


def _name(what: str, key: str | None) -> str:
    # Built only on a refusal: formatting a name for every kept value would cost more than the
    # checks themselves.
    return what if key is None else f"{what} {shown(key)}"


def extra_json(extra: dict[str, Any]) -> str:
    r"""Unknown keys and their values as JSON for `jsonb`, refused if the store could not hold it.

    Checks the JSON text that is written anyway, with C-level scans: orjson writes a NUL as
    `\u0000`, and a value cannot nest deeper than there are brackets. Only when a scan cannot
    rule a problem out (a NUL, or a text holding a backslash and "u0000"; many brackets) are the
    values walked to find it or clear it. (Scans of `str`, not `bytes`: `in` on bytes costs
    several times more.)

    Raises:
        RefusedError: `bad_text` for a NUL in a key or a text, `bad_structure` for a value nested
            deeper than `MAX_EXTRA_DEPTH`.
    """
    try:
        text = orjson.dumps(extra).decode()
    except orjson.JSONEncodeError:
        text = ""  # deeper than orjson writes (255): the walk below refuses it
    if not text or "\\u0000" in text or _may_nest_too_deep(text):
        for key, value in extra.items():
            _check_extra(key, value)
        if not text:
            text = orjson.dumps(extra).decode()  # the walk did not refuse: let the cause surface
    return text


def _may_nest_too_deep(text: str) -> bool:
    if "[" not in text and "{" not in text[1:]:  # the common case: no list or object inside
        return False
    return text.count("[") + text.count("{") > MAX_EXTRA_DEPTH + 1  # + the outer object


def _check_extra(key: str, value: object) -> None:
    if "\x00" in key:
        raise _bad_text("key", None, key)
    kind = type(value)
    if kind is str:
        if "\x00" in value:  # type: ignore[operator]
            raise _bad_text("extra", key, value)  # type: ignore[arg-type]
    elif kind is dict or kind is list:
        check_kept("extra", key, value, RejectReason.BAD_STRUCTURE)


def check_kept(what: str, key: str | None, value: object, too_deep: RejectReason) -> None:
    """Refuse a list or object kept as sent that holds a NUL or is nested too deeply.

    Raises:
        RefusedError: `bad_text` for a NUL in a key or a text, `too_deep` for nesting deeper
            than `MAX_EXTRA_DEPTH`.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise RefusedError(
                too_deep, f"{_name(what, key)} is nested deeper than {MAX_EXTRA_DEPTH} levels"
            )
        if type(node) is dict:
            for name in node:
                if "\x00" in name:
                    raise _bad_text(f"{_name(what, key)}: key", None, name)
            node = node.values()
        for child in node:
            child_kind = type(child)
            if child_kind is str:
                if "\x00" in child:
                    raise _bad_text(what, key, child)
            elif child_kind is dict or child_kind is list:
                stack.append((child, depth + 1))


def parse_json(payload: bytes) -> Any:
    """Parse a payload with orjson; diagnose precisely what it refuses.

    Raises:
        RefusedError: With the most precise reason found for a payload orjson refuses.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _reparse_or_refuse(payload, exc)


def _reparse_or_refuse(payload: bytes, exc: orjson.JSONDecodeError) -> Any:
    """The slow path, for refused payloads only: transcode, or find out why and refuse."""
    encoding = json.detect_encoding(payload)
    try:
        text = payload.decode(encoding)  # strict: invalid or surrogate-encoding bytes refused
    except UnicodeDecodeError as err:
        raise RefusedError(
            RejectReason.NOT_JSON, storable(f"not valid {encoding} text: {err}")
        ) from None
    if encoding != "utf-8":
        # A byte order mark, or UTF-16/32: the same text in UTF-8 is what orjson reads.
        try:
            return orjson.loads(text.encode("utf-8"))
        except orjson.JSONDecodeError as again:
            exc = again
    raise _diagnose(text, exc)


# Candidates, searched in the text before the parsed document is walked: an integer that float8
# cannot hold has at least 309 digits; a surrogate is escaped as \uD800-\uDFFF.
_LONG_DIGITS = re.compile(r"\d{309}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _diagnose(text: str, exc: orjson.JSONDecodeError) -> RefusedError:
    """Why orjson refused `text`, found by a parse with the standard library (never kept).

    orjson follows RFC 8259 and refuses `NaN` and `Infinity`, which some controller firmwares emit
    for a failed sensor, numbers beyond float8, and lone surrogates. Hooks see the constants and
    overflowing floats as they are parsed; integers are parsed natively (a hook per integer would
    cost several times the parse), and the document is walked for huge integers or lone
    surrogates only when the text holds a candidate.
    """
    seen: list[tuple[RejectReason, str]] = []

    def constant(name: str) -> float:
        seen.append((RejectReason.NOT_FINITE, f"{name} is not a finite number"))
        return 0.0

    def floating(literal: str) -> float:
        number = float(literal)
        if math.isinf(number):
            seen.append((RejectReason.OUT_OF_RANGE, f"number {shown(literal)} does not fit float8"))
        return number

    try:
        doc = json.loads(text, parse_constant=constant, parse_float=floating)
    except RecursionError as err:
        return RefusedError(
            RejectReason.BAD_STRUCTURE,
            storable(f"nested deeper than the JSON parser allows ({type(err).__name__}: {err})"),
        )
    except json.JSONDecodeError:
        return RefusedError(RejectReason.NOT_JSON, storable(f"not valid JSON: {exc}"))
    except ValueError as err:  # not a syntax error: Python parses no integer of over 4,300 digits
        return RefusedError(
            RejectReason.OUT_OF_RANGE, storable(f"an integer does not fit float8 ({err})")
        )
    if seen:
        return RefusedError(*seen[0])
    found = _unholdable(
        doc, _LONG_DIGITS.search(text) is not None, _SURROGATE_ESCAPE.search(text) is not None
    )
    return found or RefusedError(RejectReason.NOT_JSON, storable(f"not valid JSON: {exc}"))


def _unholdable(doc: object, huge_ints: bool, surrogates: bool) -> RefusedError | None:
    """The first integer beyond float8, or text with a lone surrogate, in `doc` (no recursion)."""
    if not huge_ints and not surrogates:
        return None
    stack: list[object] = [doc]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            stack.extend(node.values())
            texts: Iterable[object] = node
        elif type(node) is list:
            stack.extend(node)
            continue
        else:
            texts = (node,)
        for item in texts:
            if type(item) is int and huge_ints and _overflows(item):
                digits = len(str(abs(item)))
                return RefusedError(
                    RejectReason.OUT_OF_RANGE, f"an integer of {digits} digits does not fit float8"
                )
            if type(item) is str and surrogates and not _is_unicode(item):
                return RefusedError(
                    RejectReason.BAD_TEXT,
                    f"{shown(item)} holds a lone surrogate, which is not Unicode text",
                )
    return None


def _overflows(number: int) -> bool:
    try:
        float(number)
    except OverflowError:
        return True
    return False


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
