"""The event bus delivers to each subscriber only the kinds it asked for."""

from __future__ import annotations

import pytest

from lmstudio_tray.core.events import (
    ALL_KINDS,
    STATUS_KINDS,
    Event,
    EventBus,
    LoadProgressed,
    ModelLoaded,
    SessionFailing,
    StateChanged,
    VerdictGiven,
)

from .helpers import Recorder


def test_a_subscriber_gets_only_the_kinds_it_named() -> None:
    bus = EventBus()
    models, everything = Recorder(), Recorder()
    bus.subscribe(models, ModelLoaded, StateChanged)
    bus.subscribe(everything, *ALL_KINDS)
    for event in (VerdictGiven("local", model="m"), ModelLoaded("local", model="m"), LoadProgressed("local"),
                  StateChanged("local", new="ready")):
        bus.publish(event)
    assert models.kinds() == ["model.loaded", "instance.state"]
    assert everything.kinds() == ["validate.verdict", "model.loaded", "load.progress", "instance.state"]


def test_subscribing_without_kinds_is_an_error_that_says_what_to_pass() -> None:
    with pytest.raises(TypeError, match="event kinds"):
        EventBus().subscribe(Recorder())


@pytest.mark.parametrize("kind", [Event, str, object])
def test_only_event_classes_are_kinds(kind: type) -> None:
    with pytest.raises(TypeError, match="not an event kind"):
        EventBus().subscribe(Recorder(), ModelLoaded, kind)


def test_unsubscribe_stops_delivery_and_leaves_the_others() -> None:
    bus = EventBus()
    first, second = Recorder(), Recorder()
    stop_first = bus.subscribe(first, ModelLoaded, SessionFailing)
    bus.subscribe(second, ModelLoaded)
    stop_first()
    stop_first()  # twice is harmless
    bus.publish(ModelLoaded("local"))
    bus.publish(SessionFailing("local"))
    assert first.events == [] and second.kinds() == ["model.loaded"]


def test_the_same_handler_twice_is_two_subscriptions() -> None:
    bus = EventBus()
    rec = Recorder()
    stop = bus.subscribe(rec, ModelLoaded)
    bus.subscribe(rec, ModelLoaded)
    bus.publish(ModelLoaded("local"))
    stop()
    bus.publish(ModelLoaded("local"))
    assert len(rec.events) == 3


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    rec = Recorder()

    def broken(event: Event) -> None:
        raise RuntimeError("tray gone")

    bus.subscribe(broken, ModelLoaded)
    bus.subscribe(rec, ModelLoaded)
    bus.publish(ModelLoaded("local"))
    assert rec.kinds() == ["model.loaded"]


def test_status_kinds_leave_out_the_per_hook_verdict() -> None:
    assert VerdictGiven not in STATUS_KINDS and SessionFailing not in STATUS_KINDS
    assert set(STATUS_KINDS) | {VerdictGiven, SessionFailing} == set(ALL_KINDS)
