"""The console's languages: which one a browser gets, and the strings of each.

Each language's strings live in one file, `i18n/<tag>.json`, a flat object of key to text; every
file has the same keys (`tests/telematics/test_console_language.py`). The choice is the `lang`
cookie the page sets when the person switches language, else the browser's `Accept-Language`,
else English. Reads only the package's own data files.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"
LANG_COOKIE = "telematics_lang"
# Accept-Language is a client's header: parse a bounded prefix, a bounded number of entries.
_MAX_HEADER_CHARS = 1000
_MAX_RANGES = 20


def _match(tag: str) -> str | None:
    """The console language a language range asks for, if any."""
    tag = tag.strip().lower()
    if tag.startswith("zh"):
        # Simplified Chinese for zh, zh-CN, zh-Hans, zh-SG; Traditional-only tags get English.
        return None if tag in ("zh-tw", "zh-hk", "zh-mo", "zh-hant") else "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def from_accept_language(header: str | None) -> str | None:
    """The best console language of an `Accept-Language` header (RFC 9110 q-values)."""
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


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The language of a request: the saved choice, else the browser's, else English."""
    if cookie in LANGUAGES:
        assert cookie is not None
        return cookie
    return from_accept_language(accept_language) or DEFAULT


@cache
def strings(lang: str) -> dict[str, str]:
    """The strings of `lang` (one of `LANGUAGES`), key to text.

    Raises:
        KeyError: Not a console language.
    """
    if lang not in LANGUAGES:
        raise KeyError(lang)
    text = resources.files(__package__).joinpath("i18n", f"{lang}.json").read_text("utf-8")
    loaded = json.loads(text)
    if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
        raise TypeError(f"i18n/{lang}.json must map keys to strings")
    return {str(k): v for k, v in loaded.items()}
