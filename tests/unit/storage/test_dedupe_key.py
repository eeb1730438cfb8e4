"""Dedupe keys: one per distinct notification, at most 64 characters, and a call's keys side by side
in the unique index (led by its session), so that storing a notification does not touch a random
page of an index holding a key for every notification ever stored."""

from __future__ import annotations

import random

from engine.storage import make_dedupe_key


def test_the_same_parts_give_the_same_key_and_any_other_part_another():
    key = make_dedupe_key("S4643", 2, "session=S4643&call_state=ongoing")
    assert key == make_dedupe_key("S4643", 2, "session=S4643&call_state=ongoing")
    others = {
        make_dedupe_key("S4644", 2, "session=S4643&call_state=ongoing"),
        make_dedupe_key("S4643", 3, "session=S4643&call_state=ongoing"),
        make_dedupe_key("S4643", 2, "session=S4643&call_state=ended"),
        make_dedupe_key("S4643", 2),
        make_dedupe_key("S4643", None, "session=S4643&call_state=ongoing"),
    }
    assert key not in others and len(others) == 5


def test_a_key_is_led_by_the_session_and_fits_the_column():
    key = make_dedupe_key("S4643", 1, "body")
    assert key.startswith("S4643:")
    assert len(key) == 64
    assert all(c in "0123456789abcdef" for c in key[len("S4643:"):])
    assert len(make_dedupe_key(None, 1, "body")) == 64
    assert make_dedupe_key(None, 1, "body").startswith(":")


def test_a_long_session_is_cut_in_front_but_still_told_apart():
    shared = "conference-room-sales-"  # 22 characters in common: more than the key keeps in front
    a, b = make_dedupe_key(shared + "a", 1, "x"), make_dedupe_key(shared + "b", 1, "x")
    assert len(a) == len(b) == 64
    assert a[:20] == b[:20] == shared[:20]
    assert a != b


def test_in_index_order_each_calls_keys_lie_together():
    sessions = [f"S{n}" for n in range(1000, 1050)]
    notifications = [(s, step, f"session={s}&step={step}") for s in sessions for step in range(1, 6)]
    random.Random(7).shuffle(notifications)  # as they arrive: calls interleaved
    ordered = sorted((make_dedupe_key(*n), n[0]) for n in notifications)
    runs = [session for i, (_key, session) in enumerate(ordered) if i == 0 or ordered[i - 1][1] != session]
    assert runs == sorted(sessions)  # one run of keys per call, calls in the order of their sessions
