"""The console's languages: which one a browser gets, and the strings of each.

Each language's strings live in one file, `i18n/<tag>.json`, a flat object of key to text; every
file has the same keys (`tests/telematics/test_console_language.py`). The choice is the `lang`
cookie the page sets when the person switches language, else the browser's `Accept-Language`,
else English (the header is read as the API reads it, `telematics.api.language`). Reads only
the package's own data files.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from telematics.api.language import from_accept_language

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"
LANG_COOKIE = "telematics_lang"
__all__ = ["DEFAULT", "LANGUAGES", "LANG_COOKIE", "choose", "from_accept_language", "strings"]


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
