"""What each kind of plan step does: one runner per step name, in `STEP_RUNNERS`.

A runner is `async def runner(run, step) -> bool`: it makes the step's call
through `run.log` (which records it), leaves what it found on the `PlanRun`
and answers whether the step did its part. False sends the plan to the
step's fallback (a step whose `when` is "<step> failed"): a failed optional
call, or one that answered with nothing usable. A required step's failure
raises instead. A step that answers sets `run.answer` and says it (the
model streams its answer as it writes it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from common.caller import TOOL_SCOPES, current_caller
from common.contracts.dispatch_events import DeltaEvent
from common.contracts.openai import ChatChoice, ExpertUsage, ToolCall
from common.contracts.reasoning import ReasonRequest
from common.contracts.router import (
    ANSWER_CONTROLS,
    PipelineToolCall,
    PlanStep,
    ReasoningReport,
    Source,
)
from router_svc.conversation import (
    ANSWER_ENDINGS,
    TEMPERATURES,
    AnswerMode,
    agent_messages,
    compose_ideas,
    model_messages,
    reasoning_context,
)
from router_svc.direct_tools import DirectCall, format_tool_answer
from router_svc.plan_run import PlanRun
from router_svc.streamed_choices import StreamedChoices

__all__ = ["STEP_RUNNERS", "StepRunner"]

StepRunner = Callable[[PlanRun, PlanStep], Awaitable[bool]]
PYTHON_SCOPE = TOOL_SCOPES["python"]
# The step whose success the other memory steps need.
WRITE_USER = "memory.write_user"
# Of reasoning's deadline, left for its answer to come back over HTTP.
REASONING_MARGIN_S = 3.0
MAX_REASONING_BUDGET_S = 3600.0  # ReasonRequest's bound


# --- memory_svc -------------------------------------------------------------------------


async def _append(run: PlanRun, step: PlanStep, message: dict[str, Any]) -> bool:
    """Append `message` to the session; whether memory_svc stored it."""
    assert run.request.session_id is not None  # the memory steps' `when`
    timeout = run.settings.memory_timeout_s
    call = run.backends.append_messages(
        run.request.session_id, [message], run.request.user, timeout
    )
    return await run.log.run(step, call, timeout_s=timeout) is not None


async def write_user(run: PlanRun, step: PlanStep) -> bool:
    """Store the user's turn in the session (an agent's: the tool results it sends)."""
    text = run.conversation.text
    if pictures := sum(p.get("type") == "image_url" for p in run.conversation.seen):
        text = " ".join([text, *["[image]"] * pictures]).strip()  # memory keeps text
    message = {"role": "user", "content": text, "id": f"{run.id}-user"}
    results = [m.text() for m in run.conversation.agent_turns if m.role == "tool"]
    if results:
        # The user's own turn was stored with the call that asked for these.
        message = {**message, "role": "tool", "content": "\n".join(results)}
    if not await _append(run, step, message):
        run.notes.append("Memory was unavailable: this turn is not stored.")
        return False
    return True


async def read_context(run: PlanRun, step: PlanStep) -> bool:
    """Read the session's context (summary, memories, recent turns) for the answer."""
    assert run.request.session_id is not None
    if run.log.status(WRITE_USER) != "ok":
        await run.log.skip(step, f"{WRITE_USER} failed")
        return False
    timeout = run.settings.memory_timeout_s
    context = await run.log.run(
        step,
        run.backends.context(
            run.request.session_id, run.settings.context_budget_tokens, None, timeout
        ),
        timeout_s=timeout,
        detail=lambda c: {
            "messages": len(c.messages),
            "total_tokens": c.total_tokens,
            "dropped": c.dropped,
            "summary": c.summary is not None,
            "memories": len(c.memories),
        },
    )
    if context is None:
        run.notes.append("Memory was unavailable: answered without the stored conversation.")
        return False
    run.context = context.messages
    return True


async def write_assistant(run: PlanRun, step: PlanStep) -> bool:
    """Store the answer in the session, after the user's turn."""
    if run.log.status(WRITE_USER) != "ok":
        # An answer without its question would garble the history; memory is unwell anyway.
        await run.log.skip(step, f"{WRITE_USER} failed")
        return False
    message = {
        "role": "assistant",
        "content": run.answer or "",
        "id": f"{run.id}-assistant",
        "metadata": {"intent": run.route.intent, "dispatch_id": run.id},
    }
    return await _append(run, step, message)


# --- moe_svc ----------------------------------------------------------------------------


async def model_answer(run: PlanRun, step: PlanStep) -> bool:
    """moe_svc's answer in the step's mode, with the request's answer controls (tools,
    response_format, stop, seed, n, logprobs...), streamed to the caller when streaming."""
    mode: AnswerMode = step.arguments["mode"]
    options, settings = run.request.options, run.settings
    conversation = run.conversation
    compose = agent_messages if conversation.is_agent else model_messages
    temperature = options.temperature
    if temperature is None:
        temperature = settings.creative_temperature if mode == "creative" else TEMPERATURES[mode]
    timeout = settings.model_timeout_s
    body: dict[str, Any] = {
        **options.model_dump(
            mode="json", by_alias=True, include=set(ANSWER_CONTROLS), exclude_none=True
        ),
        "messages": compose(mode, conversation, run.context),
        "temperature": temperature,
        "max_tokens": options.max_tokens or settings.max_answer_tokens,
        "return_experts": True,
    }

    def keep_experts(experts: dict[str, Any] | None) -> None:
        if experts is None:
            return
        try:
            run.experts = ExpertUsage.model_validate(experts)
        except ValidationError:
            run.experts = None  # a heatmap is not worth failing the answer for

    async def answer() -> tuple[list[ChatChoice], str]:
        body["model"] = options.model or await run.backends.model(timeout)
        if run.emit is None:
            choices, experts = await run.backends.chat(body, timeout)
            keep_experts(experts)
            return choices, body["model"]
        assembled = StreamedChoices()
        async for pieces, experts in run.backends.chat_stream(body, timeout):
            keep_experts(experts)
            for piece in pieces:
                assembled.add(piece)
                delta = piece.delta
                if delta.content or delta.tool_calls or piece.logprobs is not None:
                    await run.say_delta(
                        DeltaEvent(
                            index=piece.index,
                            content=delta.content or "",
                            tool_calls=delta.tool_calls,
                            logprobs=piece.logprobs,
                        )
                    )
        return assembled.choices(), body["model"]

    result = await run.log.run(
        step,
        answer(),
        timeout_s=timeout,
        detail=lambda r: {
            "mode": mode,
            "chars": len(r[0][0].message.content or ""),
            "finish_reason": r[0][0].finish_reason,
            # The step is the core model's; which server answered (moe_svc or an engine).
            "model": r[1],
            "server": run.backends.server(r[1]),
        },
    )
    if result is None:
        return False
    choices, run.model = result
    first = choices[0]
    ending = ANSWER_ENDINGS.get(mode, "") if not first.message.tool_calls else ""
    await run.say(ending)
    text = (first.message.content or "").strip() + ending
    if first.message.content is not None:
        first.message.content = text
    run.choices, run.finish_reason = choices, first.finish_reason or "stop"
    run.answer = text or _called(first.message.tool_calls)
    return True


def _called(calls: list[ToolCall] | None) -> str:
    """An answer that only calls tools, as the session's history keeps it."""
    return "; ".join(f"Called {c.function.name}({c.function.arguments})" for c in calls or [])


# --- rag_svc ----------------------------------------------------------------------------


async def rag_answer(run: PlanRun, step: PlanStep) -> bool:
    """rag_svc's answer with its sources and citations."""
    options, settings = run.request.options, run.settings
    rag = await run.log.run(
        step,
        run.backends.rag_answer(
            options.collections or settings.rag_collections or None,
            run.conversation.text,
            options.k or settings.rag_k,
            settings.rag_timeout_s,
            options.max_tokens,
        ),
        timeout_s=settings.rag_timeout_s,
        detail=lambda r: {
            "sources": len(r.sources),
            "collections": sorted({s.collection for s in r.sources if s.collection}),
            "citations": len(r.citations),
            "verified": r.verified,
        },
    )
    if rag is None or not rag.answer.strip():
        run.sourced = False
        why = "it answered with nothing" if rag is not None else "it failed or was too slow"
        run.notes.append(f"Retrieval was unavailable ({why}): answered without sources.")
        return False
    run.sourced = bool(rag.sources)
    run.sources = [Source.model_validate(s.model_dump()) for s in rag.sources]
    run.citations = list(rag.citations)
    run.attribution = rag.attribution
    run.model = rag.model
    if not rag.sources:
        run.notes.append("No document matched: the answer is not based on sources.")
    await run.say(rag.answer)
    run.answer = rag.answer
    run.finish_reason = rag.finish_reason
    return True


# --- reasoning_svc ----------------------------------------------------------------------


def _reasoning_budget(deadline: float) -> float | None:
    """reasoning_svc's `time_budget_s` for a step with this deadline (None: none left)."""
    if deadline <= 0:
        return None
    return min(max(deadline - REASONING_MARGIN_S, deadline / 2), MAX_REASONING_BUDGET_S)


async def reason(run: PlanRun, step: PlanStep) -> bool:
    """reasoning_svc's answer with the step's strategy, its trace and its tool calls."""
    options = run.request.options
    timeout = run.settings.reasoning_timeout_s
    deadline = run.log.deadline(timeout, step.optional)
    request = ReasonRequest(
        question=run.conversation.text,
        strategy=step.arguments["strategy"],
        context=reasoning_context(run.conversation, run.context),
        model=options.model,
        # The caller's bound on the answer bounds every token the strategy writes.
        max_total_tokens=options.max_tokens,
        # reasoning_svc stops with its best answer so far a little before the step's
        # deadline, rather than being cut off with nothing to show.
        time_budget_s=_reasoning_budget(deadline),
    )
    result = await run.log.run(
        step,
        run.backends.reason(request, timeout),
        timeout_s=timeout,
        detail=lambda r: {
            "strategy": r.strategy,
            "model_calls": r.usage.model_calls,
            "finished": r.finished,
        },
    )
    if result is None or not result.answer.strip():
        if step.optional:
            run.notes.append("reasoning_svc was unavailable: the model answered directly.")
        return False
    run.reasoning = ReasoningReport.of(result)
    run.tool_calls = [PipelineToolCall.model_validate(c.model_dump()) for c in result.tool_calls]
    run.model = result.model
    if not result.finished:
        run.notes.append(f"Reasoning stopped before it was sure ({result.stop_reason}).")
    if result.stop_reason == "token_budget":
        run.finish_reason = "length"  # the caller's max_tokens cut the strategy short
    await run.say(result.answer)
    run.answer = result.answer
    return True


# --- creative_svc -----------------------------------------------------------------------


async def ideate(run: PlanRun, step: PlanStep) -> bool:
    """creative_svc's ideas, each drawn, and its critique."""
    n = run.request.options.n_images or 1
    timeout = run.settings.creative_timeout_s
    ideas = await run.log.run(
        step,
        run.backends.ideate(run.conversation.text, n, timeout),
        timeout_s=timeout,
        detail=lambda b: {"ideas": len(b.get("ideas") or [])},
    )
    if ideas is None:
        run.notes.append("Image generation was unavailable: here is a description instead.")
        return False
    answer, run.images = compose_ideas(ideas)
    await run.say(answer)
    run.answer = answer
    return True


# --- tools_svc --------------------------------------------------------------------------


async def invoke_tool(run: PlanRun, step: PlanStep) -> bool:
    """The one tools_svc call the request named; code runs only for a key that may run it."""
    call = DirectCall(step.arguments["tool"], step.arguments["arguments"])
    if call.tool == "python" and not current_caller().allows(PYTHON_SCOPE):
        await refuse_python(run, step)
        return True
    timeout = run.settings.tool_timeout_s
    result = await run.log.run(
        step,
        run.backends.invoke_tool(call.tool, call.arguments, timeout),
        timeout_s=timeout,
        detail=lambda r: {"tool": r.tool, "error": r.error},
    )
    # A snippet that raises is still the answer to "run this"; other tools' errors are not.
    if result is None or (result.error is not None and call.tool != "python"):
        why = result.error if result is not None else "the call failed"
        run.notes.append(f"The direct {call.tool} call did not work ({why}); the agent took over.")
        return False
    record = PipelineToolCall(
        tool=result.tool,
        arguments=call.arguments,
        output=result.output,
        error=result.error,
        duration_ms=result.duration_ms,
        truncated=result.truncated,
    )
    run.tool_calls = [record]
    answer = format_tool_answer(call, result.output)
    await run.say(answer)
    run.answer = answer
    return True


async def refuse_python(run: PlanRun, step: PlanStep) -> None:
    """The answer to a request to run code from a key that may not run any."""
    await run.log.skip(step, f"the key lacks the {PYTHON_SCOPE} scope")
    answer = (
        f"This API key does not have the '{PYTHON_SCOPE}' scope, so the code was not run. "
        "An admin can grant the scope to the key; I can explain the code instead if you ask."
    )
    run.notes.append(f"Code was not run: the key lacks the '{PYTHON_SCOPE}' scope.")
    await run.say(answer)
    run.answer = answer


STEP_RUNNERS: dict[str, StepRunner] = {
    "memory.write_user": write_user,
    "memory.context": read_context,
    "memory.write_assistant": write_assistant,
    "moe.answer": model_answer,
    "rag.answer": rag_answer,
    "reasoning.reason": reason,
    "creative.ideate": ideate,
    "tools.invoke": invoke_tool,
}
