"""`POST /v1/dispatch`'s logic: route the turn, run its plan, answer, remember.

`Dispatcher.prepare` checks the request and classifies it (so bad input is a
4xx before any stream starts); `Dispatcher.execute` runs the route's plan
with `run_plan`: each `PlanStep` goes to its runner in `STEP_RUNNERS` once
the steps it comes after are done, so steps without a common ancestor run
concurrently (the memory branch next to retrieval, ideation or a tool call).
Each step's latency and outcome go to the pipeline, and, when streaming, out
as events the moment they finish. Optional steps that fail degrade the
answer and say so in `notes`; a failed required step fails the dispatch
with the upstream's error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Literal

from common.contracts.dispatch_events import RouteEvent
from common.contracts.memory import ID_PATTERN
from common.contracts.openai import ChatChoice, ChatMessage
from common.contracts.router import (
    AssistantMessage,
    DispatchMessage,
    DispatchOptions,
    DispatchRequest,
    DispatchResponse,
    PlanStep,
)
from common.errors import BadRequest, ServiceError
from router_svc.backends import Backends
from router_svc.conversation import Conversation, parse_conversation
from router_svc.plan_run import Emit, PlanRun, Prepared
from router_svc.plans import SESSION, failed_step, unhonoured
from router_svc.route_decision import Router
from router_svc.settings import RouterSettings
from router_svc.shedding import ShedWindow
from router_svc.step_runners import STEP_RUNNERS

logger = logging.getLogger("router_svc.dispatch")

__all__ = ["Dispatcher", "run_plan"]

# "skipped": the step's `when` did not hold, so it did not run.
StepOutcome = Literal["ok", "failed", "skipped"]


async def run_plan(run: PlanRun) -> None:
    """Run every step of `run.route.plan`, each once the steps in its `after` are done.

    A step's `when` decides whether it runs: "session_id given" (else it is
    skipped with "no session_id"), or "<step> failed" for a fallback, which
    runs only when that step's runner said it failed. Fallbacks that were not
    needed are recorded last, after the steps that ran, as "not needed". A
    required step's error cancels the steps still running and is raised; so
    is the caller's cancellation.
    """
    tasks: dict[str, asyncio.Task[StepOutcome]] = {}
    # Fallbacks whose step did not fail, with that step's name.
    not_needed: list[tuple[PlanStep, str]] = []

    async def run_step(step: PlanStep) -> StepOutcome:
        outcomes = {name: await tasks[name] for name in step.after}
        if step.when == SESSION:
            if run.request.session_id is None:
                await run.log.skip(step, "no session_id")
                return "skipped"
        elif step.when is not None:
            needed = failed_step(step.when)
            if needed is None:
                raise ValueError(f"{step.name}: unknown condition {step.when!r}")
            if needed not in outcomes:
                outcomes[needed] = await tasks[needed]
            if outcomes[needed] != "failed":
                not_needed.append((step, needed))
                return "skipped"
        return "ok" if await STEP_RUNNERS[step.name](run, step) else "failed"

    for step in run.route.plan.steps:
        tasks[step.name] = asyncio.create_task(run_step(step), name=f"step {step.name}")
    try:
        await asyncio.gather(*tasks.values())
    finally:
        pending = [task for task in tasks.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for step, needed in sorted(not_needed, key=lambda pair: run.route.plan.steps.index(pair[0])):
        await run.log.skip(step, f"not needed: {needed} did not fail")


def _core_model_reason(conversation: Conversation, options: DispatchOptions) -> str | None:
    """Why only the core model can answer this turn (None: any plan can)."""
    if conversation.seen:
        return "A picture to look at"
    if conversation.agent_turns:
        return "An agent's tool results to answer"
    if options.tools and options.tool_choice != "none":
        return "The request's own tools"
    if options.response_format is not None and options.response_format.type != "text":
        return f"A {options.response_format.type} response_format"
    return None


class Dispatcher:
    def __init__(self, settings: RouterSettings, router: Router, backends: Backends) -> None:
        self.settings = settings
        self.router = router
        self.backends = backends
        self.shedding = ShedWindow()
        # Background fact extractions (ROUTER_REMEMBER_FACTS), kept so none is collected early.
        self._remembering: set[asyncio.Task[None]] = set()

    async def prepare(self, request: DispatchRequest) -> Prepared:
        """Check the request and route its last turn (4xx here, before any answer starts)."""
        conversation = parse_conversation(request, self.settings)
        options = request.options
        history = conversation.history[-self.settings.max_history_messages :]
        if not history and options.intent is None:
            history = await self._stored_turns(request.session_id, conversation.text)
        route = await asyncio.to_thread(
            self.router.route,
            conversation.text,
            history,
            forced_intent=options.intent,
            strategy=options.strategy,
            core_model=_core_model_reason(conversation, options),
            sees=bool(conversation.seen),
        )
        refused = unhonoured(route.plan, options)
        if refused is not None:
            raise BadRequest(
                f"'{refused}' cannot be honoured: this request was routed to the "
                f"{route.intent} plan, whose answer is not written by the core model alone. "
                "Send it with a model id (or without the field).",
                param=refused,
                code="unsupported_for_plan",
            )
        self.shedding.check(route.plan)
        return Prepared(request, conversation, route)

    async def _stored_turns(self, session_id: str | None, text: str) -> list[DispatchMessage]:
        """The session's last turns from memory_svc, for a short follow-up sent alone.

        Clients that keep the conversation in a session send only the new turn;
        "and in Celsius?" still needs the one before it. Best effort: no
        history when memory_svc is slow or down.
        """
        if session_id is None or not self.router.classifier.is_follow_up(text):
            return []
        timeout = self.settings.memory_timeout_s
        try:
            async with asyncio.timeout(timeout):
                turns = await self.backends.recent_messages(session_id, 4, timeout)
        except (TimeoutError, ServiceError):
            return []
        return [DispatchMessage(role=role, content=content) for role, content in turns]

    async def execute(self, prepared: Prepared, emit: Emit | None = None) -> DispatchResponse:
        """Run the plan; a failed required step raises its upstream's `ServiceError`.

        With `emit`, the route goes out first, then each step and each piece of
        the answer as they come (the stream's `done` event is the caller's).
        """
        started = time.perf_counter()
        run = PlanRun(self.settings, self.backends, prepared, emit)
        route = prepared.route
        if emit is not None:
            await emit(RouteEvent(**dict(route)))
        if route.reason and route.fallback:
            run.notes.append(route.reason)
        try:
            await run_plan(run)
        except ServiceError as exc:
            self.shedding.note(exc)
            raise
        self._remember(prepared)
        answer = run.answer or ""
        choices = run.choices or [
            ChatChoice(
                index=0,
                message=ChatMessage(content=answer),
                finish_reason=run.finish_reason,
            )
        ]
        return DispatchResponse(
            id=prepared.id,
            session_id=prepared.request.session_id,
            message=AssistantMessage(content=choices[0].message.content or ""),
            choices=choices,
            pipeline=run.pipeline(round((time.perf_counter() - started) * 1000, 1)),
        )

    def _remember(self, prepared: Prepared) -> None:
        """Hand the user's turn to memory_svc's fact extraction, in the background: the
        answer does not wait for it, and the turn's tenant and request id go with it."""
        user = prepared.request.user
        if not self.settings.remember_facts or prepared.conversation.agent_turns:
            return
        if user is None or not re.fullmatch(ID_PATTERN, user):
            return  # no user, or one memory_svc could not file facts under
        if len(self._remembering) >= self.settings.remember_max_pending:
            logger.warning(
                "fact extraction skipped: too many in flight",
                extra={"pending": len(self._remembering)},
            )
            return
        metadata = {"source": "chat", "dispatch_id": prepared.id}
        if prepared.request.session_id is not None:
            metadata["session_id"] = prepared.request.session_id
        task = asyncio.create_task(
            self._extract(user, prepared.conversation.text, metadata), name="remember facts"
        )
        self._remembering.add(task)
        task.add_done_callback(self._remembering.discard)

    async def _extract(self, user: str, text: str, metadata: dict[str, str]) -> None:
        timeout = self.settings.remember_timeout_s
        try:
            async with asyncio.timeout(timeout):
                facts = await self.backends.extract_memories(user, [text], metadata, timeout)
        except (ServiceError, TimeoutError) as exc:
            logger.warning("fact extraction failed", extra={"error": str(exc)})
            return
        logger.info("facts remembered", extra={"facts": len(facts)})
