"""One sink for everything a run reports.

The executor emits `Event`s into one `Sink`; the event log, the live view, the ledger
recorder and tests are subscribers. Nothing in the executor writes to a file or a terminal
directly, so every byte bound for one of them passes through the same redaction.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    kind: str  # run.started, job.started, step.started, output, step.finished, ...
    fields: dict[str, Any] = field(default_factory=dict)


class Subscriber(Protocol):
    def handle(self, event: Event) -> None: ...


class Sink:
    """Delivers each event to every subscriber, in order, one event at a time."""

    def __init__(self, subscribers: Sequence[Subscriber] = ()) -> None:
        self._subscribers = list(subscribers)
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def emit(self, kind: str, **fields: Any) -> None:
        event = Event(kind, fields)
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.handle(event)


class Recorder:
    """A subscriber that keeps every event: for tests and for the JSON summary."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]
