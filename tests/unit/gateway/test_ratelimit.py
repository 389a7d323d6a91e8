"""Retry-After of the sliding-window limiter."""

from __future__ import annotations

from gateway.ratelimit import _seconds_until_room


def test_previous_window_share_decays_within_this_window() -> None:
    # 10 in the previous window, none now, limit 10, 30 s in: used 5; 6 more fit
    # once 1 more unit of the previous window has decayed (6 s later).
    assert _seconds_until_room(10, 6, cur=0, prev=10, into=30.0) == 6


def test_a_full_current_window_waits_into_the_next() -> None:
    # 10 used now, limit 10, 45 s in: the next window starts in 15 s with this one
    # weighing 1, so 1 more fits 6 s after that.
    assert _seconds_until_room(10, 1, cur=10, prev=0, into=45.0) == 21


def test_a_cost_above_the_limit_waits_a_whole_window() -> None:
    assert _seconds_until_room(10, 11, cur=0, prev=0, into=0.0) == 60
