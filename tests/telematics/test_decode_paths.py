"""The fast batch path of the decoder accepts and refuses exactly what the careful path does."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnosis.signals import SIGNALS
from telematics.wire.decode import DecodedBatch, Limits, decode_message

NOW_MS = 1_790_000_000_000
LIMITS = Limits()

numbers = st.one_of(
    st.integers(min_value=-300, max_value=10_000),
    st.floats(min_value=-300, max_value=10_000, allow_nan=False),
)
values = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=2))


def reading_of(values: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {"ts": st.integers(min_value=NOW_MS - 10**6, max_value=NOW_MS + 10**6)},
        optional={
            **{s.name: values for s in SIGNALS},
            "dtc": st.lists(
                st.fixed_dictionaries(
                    {"spn": st.integers(0, 600_000), "fmi": st.integers(0, 40)},
                    optional={"oc": st.integers(0, 130)},
                ),
                max_size=2,
            ),
        },
    )


# Half the batches hold numbers only (in range or out of it), so the fast path is exercised.
batches = st.one_of(
    st.lists(reading_of(st.one_of(numbers, st.none())), min_size=2, max_size=8),
    st.lists(reading_of(values), min_size=2, max_size=8),
)


def decode(payload: object) -> DecodedBatch:
    out = DecodedBatch()
    decode_message(
        "machines/EX-1/telemetry",
        orjson.dumps(payload),
        now_ms=NOW_MS,
        limits=LIMITS,
        known_machines={"EX-1"},
        known_engineers=set(),
        out=out,
    )
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=300, deadline=None)
@given(batches)
def test_batch_decodes_like_its_readings_one_by_one(readings: list[dict[str, object]]) -> None:
    batch = decode({"readings": readings})
    singles = [decode(r) for r in readings]
    accepted = [s for s in singles if len(s.readings)]
    assert len(batch.readings) == len(accepted)
    assert len(batch.rejects) == len(readings) - len(accepted)
    for i, single in enumerate(accepted):
        assert batch.readings.ts_ms[i] == single.readings.ts_ms[0]
        assert batch.readings.dtc[i] == single.readings.dtc[0]
        for column, one in zip(batch.readings.values, single.readings.values, strict=True):
            assert same(float(column[i]), float(one[0]))
    refused = [s.rejects[0].reason for s in singles if s.rejects]
    assert [r.reason for r in batch.rejects] == refused
