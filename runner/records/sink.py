"""One sink for everything a run reports.

The executor emits typed events (`runner.records.events`) into one `Sink`; the event log,
the live view, the ledger recorder and tests are subscribers. Nothing in the executor
writes to a file or a terminal directly, so every byte bound for one of them passes
through the same redaction. `emit_all` delivers a block of events (a step's output, a read
at a time) to a subscriber that takes blocks (`handle_all`) in one call, and one by one to
the others.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from runner.records.events import RunEvent


class Subscriber(Protocol):
    def handle(self, event: RunEvent) -> None: ...


@runtime_checkable
class BlockSubscriber(Protocol):
    """A subscriber that also takes a block of events at once, in order."""

    def handle(self, event: RunEvent) -> None: ...

    def handle_all(self, events: Sequence[RunEvent]) -> None: ...


class Sink:
    """Delivers each event to every subscriber, in subscription order.

    Each subscriber sees one event at a time, and the events of one thread in the order
    they were emitted; but subscribers do not wait for each other: one thread syncing the
    ledger does not hold up another thread's line in the event log or the live view.
    """

    def __init__(self, subscribers: Sequence[Subscriber] = ()) -> None:
        self._subscribers: list[tuple[Subscriber, threading.Lock]] = []
        self._guard = threading.Lock()
        for subscriber in subscribers:
            self.subscribe(subscriber)

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._guard:
            self._subscribers = [*self._subscribers, (subscriber, threading.Lock())]

    def emit(self, event: RunEvent) -> None:
        for subscriber, lock in self._subscribers:
            with lock:
                subscriber.handle(event)

    def emit_all(self, events: Sequence[RunEvent]) -> None:
        """`emit` each event, in order; a `BlockSubscriber` gets them in one call."""
        if not events:
            return
        for subscriber, lock in self._subscribers:
            with lock:
                if isinstance(subscriber, BlockSubscriber):
                    subscriber.handle_all(events)
                else:
                    for event in events:
                        subscriber.handle(event)


class Recorder:
    """A subscriber that keeps every event, in order (what tests of emitters look at)."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def handle(self, event: RunEvent) -> None:
        self.events.append(event)
