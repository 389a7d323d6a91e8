"""`run_plan` runs any plan as data: a new kind of step is a plan entry and a runner;
independent steps run concurrently, fallbacks run only after a failure, and a required
step's error stops the rest."""

from __future__ import annotations

import asyncio
import time

import pytest

from common.contracts.router import DispatchRequest, Plan, PlanStep, RouteResponse
from common.errors import UpstreamUnavailable
from router_svc.backends import Backends
from router_svc.conversation import parse_conversation
from router_svc.dispatch import run_plan
from router_svc.plan_run import PlanRun, Prepared
from router_svc.plans import failed
from router_svc.settings import RouterSettings
from router_svc.step_runners import STEP_RUNNERS
from tests.helpers.router_unit_fakes import FakeUpstreams


def plan_run(settings: RouterSettings, steps: list[PlanStep]) -> PlanRun:
    request = DispatchRequest.model_validate({"messages": [{"role": "user", "content": "Hi"}]})
    plan = Plan(intent="chat", description="a test plan", steps=steps)
    route = RouteResponse(
        intent="chat",
        confidence=1.0,
        scores={"chat": 1.0},
        plan=plan,
        fallback=False,
        threshold=0.5,
    )
    prepared = Prepared(request, parse_conversation(request, settings), route)
    return PlanRun(settings, Backends(FakeUpstreams().upstreams()), prepared, None)


def step(name: str, *after: str, when: str | None = None, optional: bool = True) -> PlanStep:
    return PlanStep(
        name=name,
        service="test_svc",
        endpoint="POST /x",
        after=list(after),
        when=when,
        optional=optional,
    )


class Recorder:
    """Runners for made-up steps: each sleeps, notes when it ran, and succeeds unless told."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self.failing: set[str] = set()
        for name in names:
            monkeypatch.setitem(STEP_RUNNERS, name, self.runner)

    async def runner(self, run: PlanRun, plan_step: PlanStep) -> bool:
        started = time.perf_counter()
        await asyncio.sleep(0.05)
        if plan_step.name == "test.required" and plan_step.name in self.failing:
            raise UpstreamUnavailable("test_svc is down.")
        self.spans[plan_step.name] = (started, time.perf_counter())
        await run.log.skip(plan_step, "ran")  # a record in the log, in finishing order
        run.answer = plan_step.name
        return plan_step.name not in self.failing


async def test_a_new_step_runs_from_its_plan_entry_and_runner(
    settings: RouterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, ["test.lookup", "test.answer"])
    run = plan_run(settings, [step("test.lookup"), step("test.answer", "test.lookup")])

    await run_plan(run)

    assert [s.name for s in run.log.steps] == ["test.lookup", "test.answer"]
    assert recorder.spans["test.lookup"][1] <= recorder.spans["test.answer"][0]
    assert run.answer == "test.answer"


async def test_steps_without_a_common_ancestor_run_concurrently(
    settings: RouterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, ["test.a", "test.b", "test.join"])
    run = plan_run(
        settings, [step("test.a"), step("test.b"), step("test.join", "test.a", "test.b")]
    )

    await run_plan(run)

    (a_start, a_end), (b_start, b_end) = recorder.spans["test.a"], recorder.spans["test.b"]
    assert a_start < b_end and b_start < a_end
    assert recorder.spans["test.join"][0] >= max(a_end, b_end)


async def test_a_fallback_runs_only_when_its_step_failed(
    settings: RouterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, ["test.main", "test.fallback", "test.last"])
    steps = [
        step("test.main"),
        step("test.fallback", "test.main", when=failed("test.main")),
        step("test.last", "test.main", "test.fallback"),
    ]

    run = plan_run(settings, steps)
    await run_plan(run)
    assert [(s.name, s.error) for s in run.log.steps] == [
        ("test.main", "ran"),
        ("test.last", "ran"),
        ("test.fallback", "not needed: test.main did not fail"),
    ]

    recorder.failing = {"test.main"}
    run = plan_run(settings, steps)
    await run_plan(run)
    assert [s.name for s in run.log.steps] == ["test.main", "test.fallback", "test.last"]


async def test_without_a_session_the_session_steps_are_skipped(
    settings: RouterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Recorder(monkeypatch, ["test.answer"])
    memory = step("memory.write_user", when="session_id given")
    run = plan_run(settings, [memory, step("test.answer", "memory.write_user")])

    await run_plan(run)

    assert [(s.name, s.status, s.error) for s in run.log.steps] == [
        ("memory.write_user", "skipped", "no session_id"),
        ("test.answer", "skipped", "ran"),
    ]


async def test_a_required_step_failing_stops_the_steps_still_running(
    settings: RouterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, ["test.required", "test.slow", "test.after"])
    recorder.failing = {"test.required"}

    async def slow(run: PlanRun, plan_step: PlanStep) -> bool:
        await asyncio.sleep(5)
        recorder.spans["test.slow"] = (0.0, 0.0)
        return True

    monkeypatch.setitem(STEP_RUNNERS, "test.slow", slow)
    run = plan_run(
        settings,
        [
            step("test.required", optional=False),
            step("test.slow"),
            step("test.after", "test.required"),
        ],
    )

    started = time.perf_counter()
    with pytest.raises(UpstreamUnavailable):
        await run_plan(run)

    assert time.perf_counter() - started < 1
    assert "test.slow" not in recorder.spans and "test.after" not in recorder.spans
