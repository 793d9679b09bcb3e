"""Text and instants as the feed writes them. Pure: no I/O library is imported here.

XML 1.0 can hold only `#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]`
(section 2.2); ElementTree escapes markup but writes any other character as it is, which makes
the document unreadable to every conforming parser. Registry fields already refuse NUL, but
other control characters (and U+FFFE, U+FFFF) can reach them, so every text put into a document
goes through `xml_safe` first: a character XML cannot hold becomes U+FFFD, visibly replaced,
never dropped silently. JSON answers carry the same text, so both formats say the same thing.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"


def xml_safe(text: str) -> str:
    """`text` with every character XML 1.0 cannot hold replaced by U+FFFD."""
    if text.isascii() and text.isprintable():  # the common case, without the regex
        return text
    return _NOT_XML.sub(REPLACEMENT, text)


@functools.lru_cache(maxsize=4096)
def utc_text(ts: datetime) -> str:
    """An aware instant as the standard writes it: `YYYY-MM-DDThh:mm:ssZ`, UTC, whole seconds.

    Readings are stored to the millisecond; the standard's instants have whole seconds, so the
    fraction is cut (not rounded: an instant never moves past the reading it names).
    """
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime | None:
    """A path's `startDateUTC`/`endDateUTC`: ISO 8601 with `Z` or an offset, or a date; a time
    without an offset is UTC (the parameter's name says so). None if it is not an instant.
    """
    if len(text) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not ISO 8601, or past year 1..9999 once in UTC
        return None
