"""The router's shed window: how long it refuses plans after the core model shed one."""

from __future__ import annotations

import pytest

from common.errors import Overloaded, UpstreamError
from router_svc.plans import make_plan
from router_svc.shedding import ShedWindow, needs_core_model


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shed(
    origin: str = "moe_svc", retry_after: str = "10", code: str = "overloaded"
) -> UpstreamError:
    return UpstreamError(
        "busy",
        status_code=503,
        error_type="service_unavailable",
        origin=origin,
        code=code,
        headers={"Retry-After": retry_after},
    )


CHAT = make_plan("chat", "Hello", fallback=False)


def test_a_plan_the_model_writes_is_refused_for_what_is_left_of_the_retry_after() -> None:
    clock = Clock()
    window = ShedWindow(clock)
    window.note(shed(retry_after="10"))
    clock.now += 3.5

    with pytest.raises(Overloaded) as refused:
        window.check(CHAT)

    assert refused.value.status_code == 503
    assert refused.value.headers["Retry-After"] == "7"
    clock.now += 6.6
    window.check(CHAT)  # the window has passed: plans start again


@pytest.mark.parametrize(
    "error",
    [
        shed(origin="tools_svc"),  # only the core model's shedding opens the window
        shed(code="upstream_unavailable"),  # a failure is the breaker's business, not this
        shed(retry_after="soon"),
        shed(retry_after="nan"),
    ],
)
def test_other_errors_open_no_window(error: UpstreamError) -> None:
    window = ShedWindow(Clock())
    window.note(error)
    window.check(CHAT)


def test_a_huge_retry_after_is_capped() -> None:
    clock = Clock()
    window = ShedWindow(clock)
    window.note(shed(retry_after="100000"))
    clock.now += 121
    window.check(CHAT)


@pytest.mark.parametrize(
    ("intent", "text", "needs"),
    [
        ("chat", "Hello", True),
        ("factual", "Who wrote Animal Farm?", True),
        ("reasoning", "What is 12 * 7 + 3?", True),
        ("creative", "Draw a red dress", True),
        ("tool", "What is 1234 * 5678?", False),  # a direct calculator call; ReAct only if it fails
    ],
)
def test_which_plans_need_the_core_model(intent: str, text: str, needs: bool) -> None:
    assert needs_core_model(make_plan(intent, text, fallback=False)) is needs  # type: ignore[arg-type]
