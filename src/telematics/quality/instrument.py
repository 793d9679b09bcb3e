"""The survey instrument as data: constructs, their 1-10 items with question texts in Simplified
Chinese and English, the paths between constructs, and which construct is the index.

It imports no I/O library; the only file it reads is the instrument's TOML (the packaged one
through `importlib.resources`).
`Instrument.from_doc` is the one validator, for the shipped TOML, a replacement file and the
API's PUT alike; `to_doc` is the JSON form the API and the store use.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from telematics.base.errors import InvalidRequestError
from telematics.quality.plspm import EstimationError, PathModel

NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT: Final = 500
MAX_CONSTRUCTS: Final = 30
MAX_ITEMS: Final = 20
SCALE: Final = (1, 10)
_BAD_CHARS: Final = re.compile("[\x00\ud800-\udfff]")


class InstrumentError(InvalidRequestError):
    """An instrument that cannot be used, and why."""


@dataclass(frozen=True, slots=True)
class Item:
    """One question, scored 1-10."""

    item: str
    text_zh: str
    text_en: str


@dataclass(frozen=True, slots=True)
class Construct:
    """A latent variable and the items that measure it."""

    name: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Instrument:
    """The survey's model.

    Attributes:
        constructs: The constructs, in order.
        paths: (from, to) construct names.
        index: The construct the satisfaction index is of.
    """

    constructs: tuple[Construct, ...]
    paths: tuple[tuple[str, str], ...]
    index: str

    @property
    def items(self) -> tuple[str, ...]:
        """Every item, construct by construct."""
        return tuple(i.item for c in self.constructs for i in c.items)

    def construct_names(self) -> tuple[str, ...]:
        """The constructs' names, in order."""
        return tuple(c.name for c in self.constructs)

    def path_model(self) -> PathModel:
        """The model for the estimator: item columns in `items` order."""
        blocks, start = [], 0
        for c in self.constructs:
            blocks.append(tuple(range(start, start + len(c.items))))
            start += len(c.items)
        at = {name: k for k, name in enumerate(self.construct_names())}
        return PathModel(tuple(blocks), tuple((at[a], at[b]) for a, b in self.paths))

    def to_doc(self) -> dict[str, Any]:
        """The JSON form (`{constructs, paths, index}`)."""
        return {
            "constructs": [
                {
                    "name": c.name,
                    "items": [
                        {"item": i.item, "text_zh": i.text_zh, "text_en": i.text_en}
                        for i in c.items
                    ],
                }
                for c in self.constructs
            ],
            "paths": [[a, b] for a, b in self.paths],
            "index": self.index,
        }

    @classmethod
    def from_doc(cls, doc: object) -> Instrument:
        """Validate a document (parsed TOML or JSON).

        Raises:
            InstrumentError: What is wrong, naming the part.
        """
        if not isinstance(doc, dict):
            raise InstrumentError("an instrument is a table with constructs, paths and index")
        constructs = tuple(_construct(c) for c in _list(doc.get("constructs"), "constructs"))
        if not 2 <= len(constructs) <= MAX_CONSTRUCTS:
            raise InstrumentError(f"an instrument has 2 to {MAX_CONSTRUCTS} constructs")
        names = [c.name for c in constructs]
        _unique(names, "construct")
        _unique([i.item for c in constructs for i in c.items], "item")
        paths = tuple(_path(p, set(names)) for p in _list(doc.get("paths"), "paths"))
        _unique([f"{a} -> {b}" for a, b in paths], "path")
        index = doc.get("index")
        if index not in names:
            raise InstrumentError(f"index must name one of the constructs, not {index!r}")
        instrument = cls(constructs, paths, str(index))
        try:
            instrument.path_model()
        except EstimationError as exc:
            raise InstrumentError(str(exc)) from exc
        return instrument


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InstrumentError(f"{what} must be a list")
    return value


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise InstrumentError(f"{what} {v!r} appears twice")
        seen.add(v)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InstrumentError(f"{what} must match {NAME.pattern}, not {str(value)[:80]!r}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT or _BAD_CHARS.search(value):
        raise InstrumentError(f"{what} must be text of 1 to {MAX_TEXT} characters, without NUL")
    return value


def _construct(raw: object) -> Construct:
    if not isinstance(raw, dict) or set(raw) != {"name", "items"}:
        raise InstrumentError("a construct is {name, items}")
    name = _name(raw["name"], "a construct's name")
    items = _list(raw["items"], f"items of {name}")
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InstrumentError(f"construct {name} needs 1 to {MAX_ITEMS} items")
    out = []
    for i in items:
        if not isinstance(i, dict) or set(i) != {"item", "text_zh", "text_en"}:
            raise InstrumentError(f"an item of {name} is {{item, text_zh, text_en}}")
        item = _name(i["item"], f"an item of {name}")
        out.append(Item(item, _text(i["text_zh"], f"{item}.text_zh"),
                        _text(i["text_en"], f"{item}.text_en")))  # fmt: skip
    return Construct(name, tuple(out))


def _path(raw: object, names: set[str]) -> tuple[str, str]:
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw)):
        raise InstrumentError("a path is [from, to]")
    a, b = raw
    for end in (a, b):
        if end not in names:
            raise InstrumentError(f"path {a} -> {b}: no construct {str(end)[:80]!r}")
    return a, b


def load(path: Path | None = None) -> Instrument:
    """The instrument from a TOML file, or the packaged ACSI one.

    Raises:
        InstrumentError: The file cannot be read or is not a valid instrument.
    """
    if path is None:
        return _packaged()
    try:
        return Instrument.from_doc(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InstrumentError(f"cannot read instrument {path}: {exc}") from exc


@cache
def _packaged() -> Instrument:
    text = (resources.files("telematics.quality") / "data" / "acsi.toml").read_text("utf-8")
    return Instrument.from_doc(tomllib.loads(text))
