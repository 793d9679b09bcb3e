"""Suppressed fault codes: all counted, the worst machines named at most once a minute."""

from __future__ import annotations

import logging

import pytest

from telematics.base.metrics import Metrics
from telematics.services.dtc_report import SuppressedCodes


def _total(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("telematics_dtc_suppressed_total")
    assert value is not None
    return value


def test_every_report_is_counted_and_the_log_names_the_worst_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    report = SuppressedCodes(metrics)
    with caplog.at_level(logging.WARNING, logger="telematics.services.dtc_report"):
        report.add({f"M{i}": i for i in range(1, 8)})
        report.add({"M1": 100})  # within the minute: counted, not logged
        report.add({})
    assert _total(metrics) == sum(range(1, 8)) + 100
    (record,) = caplog.records
    assert "M7 7, M6 6, M5 5, M4 4, M3 3 and 2 more machines" in record.getMessage()
