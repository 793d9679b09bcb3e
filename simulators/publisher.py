"""Running a simulated fleet against a broker: time modes, pacing, progress and the final report.

This module owns the run loop. It steps the `Fleet`, encodes readings with `simulators.wire` and
hands messages to a `Link`, the MQTT session (see `simulators.link` for why paho, driven from this
thread). It speaks only the wire contract and never imports the backend.

The API is synchronous: `run(config)` blocks until the run is over and every message is
acknowledged (or `drain_timeout_s` passed). Async callers use `arun`, which runs `run` in a worker
thread and stops it cleanly when cancelled.

Time modes:

* Real time (demo): every `period_s` each machine takes a reading stamped with the current time;
  runs for `duration_s`, or until stopped.
* Backfill (load): `readings_per_machine` readings per machine as fast as the rate allows, with
  simulated time starting `readings_per_machine * period_s` in the past, so that the last reading
  is not in the future. Machines are spread over the period by a fixed per-machine offset.

With `batch_size` k > 1 each message carries k consecutive readings of one machine
(`{"readings": [...]}`); in real time a machine then reports every k periods.

Faults (`SimConfig.faults`, see `simulators.faults`): the plan is resolved against the run's first
reading time and length, its injector is attached to the fleet, every frame passes through it
(readings of a silenced machine are not sent, so a batch may hold fewer), and the report carries
the ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from simulators.faults import FaultInjector, FaultPlan, GroundTruth
from simulators.fleet import Fleet
from simulators.link import Link, MqttSettings
from simulators.machines import MachineSpec
from simulators.state import BoolArray, Frame
from simulators.wire import (
    MAX_READINGS_PER_MESSAGE,
    TsFormat,
    encode_batch,
    encode_reading,
    frame_rows,
    telemetry_topic,
)

_log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a run needs.

    Attributes:
        machines: The fleet (see `simulators.machines.make_fleet`).
        mqtt: Broker settings.
        readings_per_machine: Backfill mode when set: this many readings per machine.
        duration_s: Real-time mode: stop after this long; None runs until stopped.
        period_s: Time between two readings of one machine (at least 1 ms).
        rate_readings_per_s: Most readings published per second; 0 for as fast as possible.
        batch_size: Readings per message, all of one machine (1..1000).
        seed: Seed of the fleet model.
        ts_format: `ms` (epoch milliseconds) or `rfc3339`.
        max_inflight: Most messages awaiting PUBACK at once.
        honour_receive_maximum: With MQTT 5, stay within the broker's Receive Maximum too.
        record_keys: Report every acknowledged `(machine_id, ts_ms)`; memory grows with the run.
        progress: Progress line on stderr: True, False, or None for "when stderr is a TTY".
        drain_timeout_s: How long to wait for the last acknowledgements.
        faults: Faults to inject, with ground truth in the report; None for a healthy fleet.
    """

    machines: tuple[MachineSpec, ...]
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    readings_per_machine: int | None = None
    duration_s: float | None = None
    period_s: float = 1.0
    rate_readings_per_s: float = 0.0
    batch_size: int = 1
    seed: int = 0
    ts_format: TsFormat = "ms"
    max_inflight: int = 1000
    honour_receive_maximum: bool = True
    record_keys: bool = False
    progress: bool | None = None
    drain_timeout_s: float = 30.0
    faults: FaultPlan | None = None

    def __post_init__(self) -> None:
        if not self.machines:
            raise ValueError("a run needs at least one machine")
        if len({m.machine_id for m in self.machines}) != len(self.machines):
            raise ValueError("machine ids must be unique")
        if self.readings_per_machine is not None and self.readings_per_machine < 1:
            raise ValueError("readings_per_machine must be at least 1")
        if self.readings_per_machine is not None and self.duration_s is not None:
            raise ValueError("give readings_per_machine (backfill) or duration_s (real time)")
        if self.period_s < 0.001 or self.rate_readings_per_s < 0:
            raise ValueError("period_s must be at least 0.001 and rate_readings_per_s >= 0")
        if not 1 <= self.batch_size <= MAX_READINGS_PER_MESSAGE:
            raise ValueError(f"batch_size must be within 1..{MAX_READINGS_PER_MESSAGE}")

    @property
    def period_ms(self) -> int:
        """The period in whole milliseconds (the resolution of `ts`)."""
        return max(1, round(self.period_s * 1000))


@dataclass(frozen=True, slots=True)
class SimReport:
    """What a run did.

    Attributes:
        machines: Fleet size.
        readings: Readings published.
        messages: Messages published.
        messages_acked: Messages the broker acknowledged as accepted.
        messages_refused: Messages the broker answered with a failure reason code (MQTT 5).
        elapsed_s: From the first publish until the last acknowledgement.
        first_ts_ms: Earliest reading time, epoch milliseconds (None if nothing was sent).
        last_ts_ms: Latest reading time, epoch milliseconds.
        reconnects: Times the session had to be re-established.
        peak_outstanding: Most messages that awaited a PUBACK at once (at most the window).
        keys: `(machine_id, ts_ms)` of every reading in an acknowledged message, if recorded.
        ground_truth: What each injected fault did (`SimConfig.faults`).
    """

    machines: int
    readings: int
    messages: int
    messages_acked: int
    messages_refused: int
    elapsed_s: float
    first_ts_ms: int | None
    last_ts_ms: int | None
    reconnects: int
    peak_outstanding: int
    keys: frozenset[tuple[str, int]] | None = field(default=None, repr=False)
    ground_truth: tuple[GroundTruth, ...] = field(default=(), repr=False)

    @property
    def is_complete(self) -> bool:
        """Whether the broker accepted every message published."""
        return self.messages_acked == self.messages

    @property
    def readings_per_s(self) -> float:
        """Achieved rate in readings a second."""
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        """Achieved rate in messages a second."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """A one-paragraph human report."""
        status = "all acknowledged" if self.is_complete else "INCOMPLETE"
        return (
            f"{self.machines} machines: {self.readings:,} readings in {self.messages:,} messages "
            f"in {self.elapsed_s:.2f} s ({self.readings_per_s:,.0f} readings/s, "
            f"{self.messages_per_s:,.0f} messages/s); {self.messages_acked:,} acked, "
            f"{self.messages_refused:,} refused ({status}); {self.reconnects} reconnects"
        )


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def run(
    config: SimConfig,
    *,
    stop: threading.Event | None = None,
    wall_clock_ms: Callable[[], int] = _wall_ms,
    progress_stream: TextIO | None = None,
) -> SimReport:
    """Simulate the fleet and publish its readings; blocks until done.

    Args:
        config: What to simulate and where to publish.
        stop: Set from another thread to end the run early (readings already generated for the
            current step are still published, and acknowledgements are still awaited).
        wall_clock_ms: Current time in epoch milliseconds; tests may inject one.
        progress_stream: Where the progress line goes; stderr by default.

    Returns:
        Counts, rates and optionally the acknowledged keys.

    Raises:
        BrokerUnavailableError: The broker cannot be reached, or the connection was lost and not
            regained within `config.mqtt.reconnect_timeout_s`.
        BrokerRefusedError: The broker refused the connection.
    """
    stop = stop or threading.Event()
    stream = progress_stream or sys.stderr
    show = config.progress if config.progress is not None else stream.isatty()
    link = Link(
        config.mqtt,
        max_inflight=config.max_inflight,
        honour_receive_maximum=config.honour_receive_maximum,
        record_keys=config.record_keys,
        stop=stop,
    )
    runner = _Runner(config, link, stop, _Progress(stream) if show else None)
    link.connect()
    try:
        if config.readings_per_machine is not None:
            runner.backfill(config.readings_per_machine, wall_clock_ms())
        else:
            runner.realtime(wall_clock_ms)
        # Even a stopped run waits (briefly) for its acknowledgements, so the report is true.
        link.drain(
            config.drain_timeout_s if not stop.is_set() else min(config.drain_timeout_s, 5.0)
        )
    finally:
        link.close()
    return runner.report()


async def arun(config: SimConfig, *, wall_clock_ms: Callable[[], int] = _wall_ms) -> SimReport:
    """`run` in a worker thread, for async callers; cancelling it stops the run cleanly.

    On cancellation the run is told to stop, its connection is closed, and CancelledError is
    raised once the worker thread has finished.
    """
    stop = threading.Event()
    worker = asyncio.ensure_future(
        asyncio.to_thread(run, config, stop=stop, wall_clock_ms=wall_clock_ms)
    )
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(Exception):
            await worker
        raise


class _Progress:
    """A progress line on a stream: rewritten in place on a terminal, appended otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._is_tty = stream.isatty()

    def show(self, link: Link, readings: int, elapsed_s: float, *, final: bool = False) -> None:
        rate = readings / elapsed_s if elapsed_s > 0 else 0.0
        line = (
            f"{readings:,} readings, {link.published:,} messages, {link.acked:,} acked, "
            f"{rate:,.0f} readings/s"
        )
        end = "\n" if final or not self._is_tty else ""
        self._stream.write(("\r\x1b[K" if self._is_tty else "") + line + end)
        self._stream.flush()


class _Runner:
    """The state of one run: fleet, pacing, counters."""

    def __init__(
        self, config: SimConfig, link: Link, stop: threading.Event, progress: _Progress | None
    ) -> None:
        self.config = config
        self.link = link
        self.stop = stop
        self.progress = progress
        self.topics = [telemetry_topic(m.machine_id) for m in config.machines]
        self.ids = [m.machine_id for m in config.machines]
        self.readings = 0
        self.first_ts_ms: int | None = None
        self.last_ts_ms: int | None = None
        self.started = 0.0
        self.next_progress = 0.0
        self.injector: FaultInjector | None = None

    def backfill(self, readings_per_machine: int, now_ms: int) -> None:
        """Publish `readings_per_machine` readings per machine, ending just before `now_ms`."""
        c = self.config
        period_ms = c.period_ms
        offsets_ms = np.random.default_rng(c.seed).integers(0, period_ms, len(c.machines))
        first_ms = now_ms - readings_per_machine * period_ms
        fleet = Fleet(
            c.machines, seed=c.seed, start_ts_ms=first_ms - period_ms, offsets_ms=offsets_ms
        )
        self._inject(fleet, first_ms, readings_per_machine * period_ms / 1000.0)
        self._start()
        for block in range(0, readings_per_machine, c.batch_size):
            if self.stop.is_set():
                break
            steps = min(c.batch_size, readings_per_machine - block)
            self._publish(
                [self._step(fleet, first_ms + (block + j) * period_ms) for j in range(steps)]
            )

    def realtime(self, wall_clock_ms: Callable[[], int]) -> None:
        """Take a reading of every machine each period, stamped now, until duration or stop."""
        c = self.config
        fleet = Fleet(c.machines, seed=c.seed, start_ts_ms=wall_clock_ms() - c.period_ms)
        self._inject(fleet, fleet.last_ts_ms + c.period_ms, c.duration_s)
        self._start()
        frames: list[tuple[Frame, BoolArray | None]] = []
        tick = 0
        # Count ticks in integers: comparing float sums against the duration flips at the edge.
        ticks = (
            None if c.duration_s is None else max(1, math.ceil(round(c.duration_s / c.period_s, 9)))
        )
        while not self.stop.is_set():
            frames.append(self._step(fleet, max(wall_clock_ms(), fleet.last_ts_ms + 1)))
            if len(frames) == c.batch_size:
                self._publish(frames)
                frames = []
            tick += 1
            if ticks is not None and tick >= ticks:
                break
            self._wait_until(self.started + tick * c.period_s)
        if frames:
            self._publish(frames)

    def report(self) -> SimReport:
        """The report of the run so far."""
        link = self.link
        elapsed_s = time.monotonic() - self.started if self.started else 0.0
        if self.progress is not None:
            self.progress.show(link, self.readings, elapsed_s, final=True)
        keys = None if link.acked_keys is None else frozenset(link.acked_keys)
        return SimReport(
            machines=len(self.config.machines),
            readings=self.readings,
            messages=link.published,
            messages_acked=link.acked,
            messages_refused=link.refused,
            elapsed_s=elapsed_s,
            first_ts_ms=self.first_ts_ms,
            last_ts_ms=self.last_ts_ms,
            reconnects=link.reconnects,
            peak_outstanding=link.peak_outstanding,
            keys=keys,
            ground_truth=() if self.injector is None else self.injector.ground_truth(),
        )

    def _inject(self, fleet: Fleet, first_ms: int, horizon_s: float | None) -> None:
        """Attach the configured faults to `fleet`, if any."""
        plan = self.config.faults
        if plan is None:
            return
        specs = plan.resolve(self.config.machines, first_ms, horizon_s)
        self.injector = FaultInjector(self.config.machines, specs, seed=self.config.seed)
        self.injector.attach(fleet)

    def _step(self, fleet: Fleet, ts_ms: int) -> tuple[Frame, BoolArray | None]:
        """One step: the frame as published and which machines send it (None: all)."""
        frame = fleet.step(ts_ms)
        if self.injector is None:
            return frame, None
        return self.injector.observe(frame)

    def _start(self) -> None:
        self.started = time.monotonic()
        self.next_progress = self.started + _PROGRESS_EVERY_S

    def _publish(self, steps: Sequence[tuple[Frame, BoolArray | None]]) -> None:
        """Publish consecutive steps: a message per machine and step, or per machine if batching.

        Each step comes with the mask of machines that send (None: all).
        """
        c, ids = self.config, self.ids
        record = c.record_keys
        rows = [frame_rows(frame, c.ts_format) for frame, _ in steps]
        ts_ms = [frame.ts_ms.tolist() for frame, _ in steps]
        sent = [None if mask is None else mask.tolist() for _, mask in steps]
        if self.first_ts_ms is None:
            self.first_ts_ms = min(ts_ms[0])
        self.last_ts_ms = max(ts_ms[-1])
        if c.batch_size == 1:
            for step_rows, step_ts, step_sent in zip(rows, ts_ms, sent, strict=True):
                for i, topic in enumerate(self.topics):
                    if step_sent is None or step_sent[i]:
                        keys = [(ids[i], step_ts[i])] if record else None
                        self._send(topic, encode_reading(step_rows[i]), 1, keys)
            return
        for i, topic in enumerate(self.topics):
            kept = [k for k, step_sent in enumerate(sent) if step_sent is None or step_sent[i]]
            if not kept:
                continue
            keys = [(ids[i], ts_ms[k][i]) for k in kept] if record else None
            self._send(topic, encode_batch([rows[k][i] for k in kept]), len(kept), keys)

    def _send(
        self, topic: str, payload: bytes, readings: int, keys: list[tuple[str, int]] | None
    ) -> None:
        now = time.monotonic()
        if now >= self.next_progress:
            self._show_progress(now)
        rate = self.config.rate_readings_per_s
        if rate > 0:
            due = self.started + self.readings / rate
            while now < due:
                self.link.service(min(due - now, 0.05))
                now = time.monotonic()
        self.link.publish(topic, payload, keys)
        self.readings += readings

    def _wait_until(self, deadline: float) -> None:
        """Keep the session serviced until the monotonic `deadline`, or until stopped."""
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if now >= self.next_progress:
                self._show_progress(now)
            self.link.service(min(deadline - now, 0.1))

    def _show_progress(self, now: float) -> None:
        self.next_progress = now + _PROGRESS_EVERY_S
        if self.progress is not None:
            self.progress.show(self.link, self.readings, now - self.started)
