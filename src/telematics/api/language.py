"""The language of an answer's texts (the knowledge base's): `?lang=`, else `Accept-Language`,
else English.

Only texts the product writes in several languages follow it (diagnoses and alarm titles from
the knowledge base); codes, numbers and names are the same in every language. An answer whose
texts follow it says which language they are in (`Content-Language`) and that it varies with
`Accept-Language`. Reads headers only; no I/O.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Header, Query, Response

from diagnosis.translations import LANGUAGES

DEFAULT: Final = "en"
# Accept-Language is a client's header: parse a bounded prefix, a bounded number of entries.
_MAX_HEADER_CHARS = 1000
_MAX_RANGES = 20


def _match(tag: str) -> str | None:
    """The language a language range asks for, if it is one of `LANGUAGES`."""
    tag = tag.strip().lower()
    if tag.startswith("zh"):
        # Simplified Chinese for zh, zh-CN, zh-Hans, zh-SG; Traditional-only tags get English.
        return None if tag in ("zh-tw", "zh-hk", "zh-mo", "zh-hant") else "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def from_accept_language(header: str | None) -> str | None:
    """The best of `LANGUAGES` for an `Accept-Language` header (RFC 9110 q-values)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:_MAX_HEADER_CHARS].split(",")[:_MAX_RANGES]):
        tag, _, params = item.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        found = _match(tag)
        if found is not None and 0 < quality <= 1:
            ranked.append((-quality, position, found))
    return min(ranked)[2] if ranked else None


def answer_language(
    response: Response,
    lang: Annotated[str | None, Query(max_length=20, description="en or zh-CN")] = None,
    accept_language: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The language of this answer's texts; sets `Content-Language` and `Vary` on it."""
    chosen = (lang if lang in LANGUAGES else None) or from_accept_language(accept_language)
    chosen = chosen or DEFAULT
    response.headers["Content-Language"] = chosen
    response.headers["Vary"] = "Accept-Language"
    return chosen


Lang = Annotated[str, Depends(answer_language)]
"""A route's parameter: the language its knowledge base texts are given in."""
