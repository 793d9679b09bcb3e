"""The rule book: every rule threshold per machine class and model, as frozen values from TOML.

This module owns the shape of `data/rules.toml` and its validation. A `[default]` table holds a
complete set of thresholds; `[class.<name>]` tables override any part of it for one machine class
(a partial override merges over the default, key by key), and `[model."<designation>"]` tables
override a class for one model designation (`class = "<name>"` says which class's table it lays
over; without it, it lays over the default). Thresholds are data, not code and not settings: an
expert edits the TOML, and nothing here knows a figure.

It must never evaluate a rule (that is `engine.py`), hold machine state, or read any file but the
one it is asked to load (by default the packaged `diagnosis/data/rules.toml`).
"""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from diagnosis.errors import DiagnosisError
from diagnosis.usage_limits import UsageLimits

__all__ = [
    "AnomalyTiming",
    "ChargingFailure",
    "CoolantRise",
    "DtcTiming",
    "FuelDrop",
    "LowOilPressure",
    "MachineSilence",
    "OutsideSite",
    "PowerLoss",
    "RuleBook",
    "RuleBookError",
    "TemperatureLimit",
    "Thresholds",
    "UsageLimits",
]


class RuleBookError(DiagnosisError, ValueError):
    """The rule book is malformed.

    Attributes:
        key: Dotted path of the offending key (`class.crane.engine_overheat.raise_c`).
        reason: What is wrong with it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"rules: {key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Persisted:
    """Persistence of a raise and of a clear: N readings and at least T seconds, both."""

    raise_readings: int
    raise_s: float
    clear_readings: int
    clear_s: float

    def _check(self, key: str) -> None:
        for name in ("raise_readings", "clear_readings"):
            if getattr(self, name) < 1:
                raise RuleBookError(f"{key}.{name}", "must be at least 1")
        for name in ("raise_s", "clear_s"):
            if getattr(self, name) < 0:
                raise RuleBookError(f"{key}.{name}", "must not be negative")


@dataclass(frozen=True, slots=True)
class LowOilPressure(_Persisted):
    """Oil pressure below a minimum curve over engine speed, or far below the machine's own.

    Attributes:
        curve_rpm: Engine speeds of the curve points, increasing.
        curve_kpa: Minimum oil pressure at each point (held flat beyond the ends).
        clear_margin_kpa: How far above the curve the pressure must be to clear.
        baseline_raise_fraction: Raise below this fraction of the machine's own healthy pressure
            at the same speed and load (its anomaly model's baseline; machines without one have
            only the curve).
        baseline_clear_fraction: Clear at or above this fraction of it (and above the curve).
    """

    curve_rpm: tuple[float, ...]
    curve_kpa: tuple[float, ...]
    clear_margin_kpa: float
    baseline_raise_fraction: float
    baseline_clear_fraction: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if len(self.curve_rpm) < 1 or len(self.curve_rpm) != len(self.curve_kpa):
            raise RuleBookError(f"{key}.curve_kpa", "needs one pressure per curve_rpm point")
        if any(b <= a for a, b in zip(self.curve_rpm, self.curve_rpm[1:], strict=False)):
            raise RuleBookError(f"{key}.curve_rpm", "must be strictly increasing")
        if self.clear_margin_kpa < 0:
            raise RuleBookError(f"{key}.clear_margin_kpa", "must not be negative")
        if not 0.0 < self.baseline_raise_fraction < 1.0:
            raise RuleBookError(f"{key}.baseline_raise_fraction", "must be between 0 and 1")
        if not self.baseline_raise_fraction <= self.baseline_clear_fraction <= 1.0:
            raise RuleBookError(
                f"{key}.baseline_clear_fraction",
                "must be between baseline_raise_fraction and 1",
            )


@dataclass(frozen=True, slots=True)
class TemperatureLimit(_Persisted):
    """A temperature that raises at or above one figure and clears below a lower one.

    Attributes:
        raise_c: Raise at or above this temperature.
        clear_c: Clear below this temperature (hysteresis: not above `raise_c`).
    """

    raise_c: float
    clear_c: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if self.clear_c > self.raise_c:
            raise RuleBookError(f"{key}.clear_c", "must not be above raise_c")


@dataclass(frozen=True, slots=True)
class CoolantRise(_Persisted):
    """Coolant temperature rising fast once past the thermostat.

    Attributes:
        min_temp_c: Only above this temperature (warm-up below it does not count).
        span_s: The rise is measured over this span.
        raise_c_per_min: Raise when rising faster than this.
        clear_c_per_min: Clear when rising slower than this (or below `min_temp_c`).
    """

    min_temp_c: float
    span_s: float
    raise_c_per_min: float
    clear_c_per_min: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if self.span_s <= 0:
            raise RuleBookError(f"{key}.span_s", "must be positive")
        if self.clear_c_per_min > self.raise_c_per_min:
            raise RuleBookError(f"{key}.clear_c_per_min", "must not be above raise_c_per_min")


@dataclass(frozen=True, slots=True)
class FuelDrop(_Persisted):
    """Fuel level falling while the engine is off.

    Attributes:
        raise_drop_pct: Raise when the level is more than this many points below the reference.
        clear_drop_pct: Clear when it is back within this many points (a refuel).
    """

    raise_drop_pct: float
    clear_drop_pct: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if not 0 <= self.clear_drop_pct <= self.raise_drop_pct:
            raise RuleBookError(f"{key}.clear_drop_pct", "must be within 0..raise_drop_pct")


@dataclass(frozen=True, slots=True)
class ChargingFailure(_Persisted):
    """Battery voltage low while the engine runs (the alternator is not charging).

    Attributes:
        min_running_s: Only after the engine has run this long (the battery recovers first).
        raise_v: Raise below this voltage.
        raise_band_v: A reading in [raise_v, raise_v + raise_band_v) neither counts towards a
            raise nor breaks one (the sender's noise about a slowly falling voltage).
        clear_v: Clear at or above this voltage.
    """

    min_running_s: float
    raise_v: float
    raise_band_v: float
    clear_v: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if self.clear_v < self.raise_v:
            raise RuleBookError(f"{key}.clear_v", "must not be below raise_v")
        if not 0.0 <= self.raise_band_v <= self.clear_v - self.raise_v:
            raise RuleBookError(f"{key}.raise_band_v", "must be between 0 and clear_v - raise_v")


@dataclass(frozen=True, slots=True)
class PowerLoss(_Persisted):
    """High load with engine speed sagging well below rated.

    Attributes:
        rated_rpm: Rated engine speed of the model.
        load_pct: Raise at or above this load; clear below it.
        raise_speed_frac: Raise below this fraction of rated speed.
        clear_speed_frac: Clear above this fraction of rated speed.
    """

    rated_rpm: float
    load_pct: float
    raise_speed_frac: float
    clear_speed_frac: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if self.rated_rpm <= 0:
            raise RuleBookError(f"{key}.rated_rpm", "must be positive")
        if self.clear_speed_frac < self.raise_speed_frac:
            raise RuleBookError(f"{key}.clear_speed_frac", "must not be below raise_speed_frac")


@dataclass(frozen=True, slots=True)
class OutsideSite(_Persisted):
    """Position outside the registered site, with a margin for GPS jitter.

    Attributes:
        raise_margin_m: Raise farther than radius + this from the site centre.
        clear_margin_m: Clear within radius + this.
    """

    raise_margin_m: float
    clear_margin_m: float

    def _check(self, key: str) -> None:
        _Persisted._check(self, key)
        if self.clear_margin_m > self.raise_margin_m:
            raise RuleBookError(f"{key}.clear_margin_m", "must not be above raise_margin_m")


@dataclass(frozen=True, slots=True)
class MachineSilence:
    """A machine that went quiet with its engine running.

    Attributes:
        timeout_s: Raise after this long without a reading.
    """

    timeout_s: float

    def _check(self, key: str) -> None:
        if self.timeout_s <= 0:
            raise RuleBookError(f"{key}.timeout_s", "must be positive")


@dataclass(frozen=True, slots=True)
class DtcTiming:
    """J1939 fault-code episodes.

    Attributes:
        clear_after_s: A code absent from readings this long closes its episode.
        max_open: Most episodes a machine holds open at once; a further code opens none until
            one closes (a controller or gateway reporting garbage codes would otherwise bury
            the alarm queue). Optional in a rules file: 32.
    """

    clear_after_s: float
    max_open: int = 32

    def _check(self, key: str) -> None:
        if self.clear_after_s < 0:
            raise RuleBookError(f"{key}.clear_after_s", "must not be negative")
        if not 1 <= self.max_open <= 10_000:
            raise RuleBookError(f"{key}.max_open", "must lie between 1 and 10000")


@dataclass(frozen=True, slots=True)
class AnomalyTiming:
    """Windows of the anomaly model and the persistence of its alarm.

    Attributes:
        window_s: Window length; windows are aligned on epoch time.
        min_readings: Windows with fewer running readings are dropped.
        raise_windows: Consecutive windows above the threshold that raise.
        clear_windows: Consecutive windows below it that clear.
        max_rpm_range: Windows whose engine speed moved more than this are not scored.
        settle_s: Readings of the first `settle_s` after an engine start do not count.
    """

    window_s: float
    min_readings: int
    raise_windows: int
    clear_windows: int
    max_rpm_range: float
    settle_s: float

    def _check(self, key: str) -> None:
        if self.window_s <= 0:
            raise RuleBookError(f"{key}.window_s", "must be positive")
        if self.settle_s < 0:
            raise RuleBookError(f"{key}.settle_s", "must not be negative")
        if self.max_rpm_range <= 0:
            raise RuleBookError(f"{key}.max_rpm_range", "must be positive")
        for name in ("min_readings", "raise_windows", "clear_windows"):
            if getattr(self, name) < 1:
                raise RuleBookError(f"{key}.{name}", "must be at least 1")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every threshold of one machine class or model (field names are the TOML table names)."""

    low_oil_pressure: LowOilPressure
    engine_overheat: TemperatureLimit
    coolant_rising_fast: CoolantRise
    hydraulic_overheat: TemperatureLimit
    fuel_drop_engine_off: FuelDrop
    charging_failure: ChargingFailure
    engine_power_loss: PowerLoss
    machine_silent: MachineSilence
    outside_site: OutsideSite
    dtc: DtcTiming
    anomaly: AnomalyTiming
    usage: UsageLimits


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Thresholds of the default, of each machine class and of each model designation that
    overrides them.

    Attributes:
        default: Thresholds of a machine whose class and designation have no table.
        classes: Complete thresholds (default merged with the override) per machine class.
        models: Complete thresholds per model designation: its override merged over the table
            of the class it names, or over the default when it names none.
    """

    default: Thresholds
    classes: Mapping[str, Thresholds]
    models: Mapping[str, Thresholds]

    def for_machine(self, model: str, machine_class: str) -> Thresholds:
        """The thresholds of a machine: its designation's table, else its class's, else the
        default. The designation is the more specific fact, so its table wins even for a
        machine filed under another class than the table names.
        """
        found = self.models.get(model)
        if found is None:
            found = self.classes.get(machine_class, self.default)
        return found

    @property
    def threshold_sets(self) -> tuple[Thresholds, ...]:
        """Every distinct table: the default, then the classes, then the designations."""
        return (self.default, *self.classes.values(), *self.models.values())

    def set_index(self, model: str, machine_class: str) -> int:
        """The position in `threshold_sets` of what `for_machine` answers."""
        if model in self.models:
            return 1 + len(self.classes) + list(self.models).index(model)
        if machine_class in self.classes:
            return 1 + list(self.classes).index(machine_class)
        return 0

    @staticmethod
    def load(path: Path | None = None) -> RuleBook:
        """Load a rule book from a TOML file.

        Args:
            path: The file; None loads the packaged `diagnosis/data/rules.toml`.

        Returns:
            The validated rule book.

        Raises:
            RuleBookError: The file is not TOML, or a key is missing, unknown or out of range.
        """
        if path is None:
            text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return RuleBook.from_toml(text)

    @staticmethod
    def from_toml(text: str) -> RuleBook:
        """Parse and validate a rule book from TOML text (see `load`)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleBookError("<file>", f"not valid TOML: {exc}") from exc
        return RuleBook.from_mapping(data)

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> RuleBook:
        """Validate a rule book from parsed TOML (see `load`)."""
        unknown = set(data) - {"default", "class", "model"}
        if unknown:
            raise RuleBookError(sorted(unknown)[0], "unknown top-level table")
        default_raw = _table(data.get("default"), "default")
        default = _build(Thresholds, default_raw, "default")
        classes_raw: dict[str, dict[str, Any]] = {}
        classes: dict[str, Thresholds] = {}
        for name, override in _table(data.get("class", {}), "class").items():
            key = f"class.{name}"
            classes_raw[name] = _merge(default_raw, _table(override, key), key)
            classes[name] = _build(Thresholds, classes_raw[name], key)
        models: dict[str, Thresholds] = {}
        for name, override in _table(data.get("model", {}), "model").items():
            key = f"model.{name}"
            table = dict(_table(override, key))
            base = default_raw
            if "class" in table:
                of_class = table.pop("class")
                if of_class not in classes_raw:
                    raise RuleBookError(f"{key}.class", f"no [class.{of_class}] table")
                base = classes_raw[of_class]
            models[name] = _build(Thresholds, _merge(base, table, key), key)
        return RuleBook(
            default=default, classes=MappingProxyType(classes), models=MappingProxyType(models)
        )


_T = TypeVar("_T")


def _table(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RuleBookError(key, "must be a table" if value is not None else "missing table")
    return value


def _merge(base: Mapping[str, Any], override: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`base` with `override` laid over it, table by table (so a partial override works)."""
    merged = dict(base)
    for name, value in override.items():
        if name not in base:
            raise RuleBookError(f"{key}.{name}", "unknown key (not in [default])")
        if isinstance(base[name], dict):
            merged[name] = _merge(base[name], _table(value, f"{key}.{name}"), f"{key}.{name}")
        else:
            merged[name] = value
    return merged


def _build(cls: type[_T], raw: Mapping[str, Any], key: str) -> _T:
    """An instance of dataclass `cls` from a TOML table, every field checked by its type."""
    hints = typing.get_type_hints(cls)
    known = fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in known]
    optional = {f.name for f in known if f.default is not MISSING}
    extra = set(raw) - set(names)
    if extra:
        raise RuleBookError(f"{key}.{sorted(extra)[0]}", "unknown key")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            if name in optional:  # added after rules files were written: its default
                continue
            raise RuleBookError(f"{key}.{name}", "missing")
        kwargs[name] = _convert(hints[name], raw[name], f"{key}.{name}")
    value = cls(**kwargs)
    check = getattr(value, "_check", None)
    if check is not None:
        check(key)
    if isinstance(value, UsageLimits) and (problem := value.problem()) is not None:
        raise RuleBookError(f"{key}.{problem[0]}", problem[1])
    return value


def _convert(hint: Any, value: object, key: str) -> object:
    # TOML booleans are ints to Python; a threshold of `true` is a typo, not a 1.
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleBookError(key, f"must be a number, not {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RuleBookError(key, f"must be an integer, not {value!r}")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise RuleBookError(key, "must be an array of numbers")
        return tuple(float(_convert(float, v, f"{key}[{i}]")) for i, v in enumerate(value))  # type: ignore[arg-type]
    if isinstance(hint, type):
        return _build(hint, _table(value, key), key)
    raise RuleBookError(key, f"unsupported type {hint!r}")  # pragma: no cover - schema bug
