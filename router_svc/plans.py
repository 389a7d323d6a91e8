"""The plan for each intent, as data: the dispatcher runs these steps and reports them.

A plan is a list of `PlanStep`s. A step runs once every step in its `after`
is done, so steps without a common ancestor run concurrently (retrieval next
to the memory context). Its `when` says whether it runs at all: "session_id
given", or "<step> failed" for a fallback that runs only when that step did
not give what the plan needed. Each step name has one runner
(`router_svc.step_runners.STEP_RUNNERS`): adding an intent is adding a plan
here and, for a new kind of step, a runner.

Every plan reads the session's context from memory_svc (when a session is
given) and writes the turn back at the end. A step is optional when its
failure only degrades the answer: the memory steps, and every step that has
a fallback after it. The intent decides the rest:

- factual: rag_svc answers with citations from the collections the caller may
  read (the shared wiki and its own, or those the request or the deployment
  names), concurrently with the memory context; if retrieval fails or is
  slow, moe_svc answers without sources;
- reasoning: reasoning_svc (strategy auto unless asked); moe_svc if it fails;
- creative: pictures go to creative_svc's ideation (ideas, images, critique),
  words to moe_svc with a creative instruction;
- tool: one tools_svc call when the request names it, else reasoning_svc's
  ReAct agent with tools_svc; code shown without a request to run it goes to
  moe_svc (an explanation, nothing runs);
- chat: moe_svc with the conversation.

Below the confidence threshold the safe plan runs whatever the intent:
moe_svc with the conversation, no tools or side effects, and the answer says
that the request was not understood with confidence.

A turn that carries the client's own `tools` or a `response_format`, or an
agent's tool results to answer, runs the core-model plan whatever its intent
(`core_model_plan`): only moe_svc decodes under a grammar or calls the
client's functions. The answer's other OpenAI controls reach the step that
writes the answer; `unhonoured` names the first one a plan's answer steps
cannot honour (see `HONOURED`), which the dispatcher refuses.
"""

from __future__ import annotations

import re

from common.contracts.router import ANSWER_CONTROLS, DispatchOptions, Intent, Plan, PlanStep
from router_svc.direct_tools import asks_about_code, detect_direct_call

__all__ = [
    "HONOURED",
    "SESSION",
    "core_model_plan",
    "failed",
    "failed_step",
    "is_visual",
    "make_plan",
    "unhonoured",
]

# The answer controls each answer step passes on. moe_svc honours them all; rag_svc and
# reasoning_svc bound and warm their model calls (temperature, max_tokens) but have no
# single sampled text that stop, seed, top_p, logprobs or n could apply to (retrieval
# picks the prompt; a strategy makes several calls and votes). A direct tool call or
# creative_svc's ideation writes no model text: temperature and max_tokens bound nothing.
_BOUNDS = frozenset({"temperature", "max_tokens"})
HONOURED: dict[str, frozenset[str]] = {
    "moe.answer": frozenset(ANSWER_CONTROLS),
    "rag.answer": _BOUNDS,
    "reasoning.reason": _BOUNDS,
    "creative.ideate": _BOUNDS,
    "tools.invoke": _BOUNDS,
}

_VISUAL = re.compile(
    r"(?i)\b(draw|drawing|sketch|paint|painting|illustrat\w*|picture|image|photo\w*|logo|"
    r"poster|cartoon|render|portrait|mascot|book cover|cover image|concept art|"
    r"t-shirt graphic|wallpaper|visual)\b"
)

SESSION = "session_id given"
_FAILED = " failed"


def failed(step: str) -> str:
    """The `when` of a fallback that runs only when `step` failed."""
    return f"{step}{_FAILED}"


def failed_step(when: str) -> str | None:
    """The step a fallback's `when` names (None for another condition)."""
    return when.removesuffix(_FAILED) if when.endswith(_FAILED) else None


def is_visual(text: str) -> bool:
    """Whether a creative request asks for a picture."""
    return bool(_VISUAL.search(text))


def _memory_steps() -> list[PlanStep]:
    return [
        PlanStep(
            name="memory.write_user",
            service="memory_svc",
            endpoint="POST /v1/sessions/{sid}/messages",
            optional=True,
            when=SESSION,
        ),
        PlanStep(
            name="memory.context",
            service="memory_svc",
            endpoint="POST /v1/sessions/{sid}/context",
            optional=True,
            after=["memory.write_user"],
            when=SESSION,
        ),
    ]


def _write_back(*answers: str) -> PlanStep:
    """Stores the answer, whichever of `answers` wrote it, after the user's turn."""
    return PlanStep(
        name="memory.write_assistant",
        service="memory_svc",
        endpoint="POST /v1/sessions/{sid}/messages",
        optional=True,
        after=["memory.write_user", *answers],
        when=SESSION,
    )


def _moe_answer(after: list[str], when: str | None = None, **arguments: object) -> PlanStep:
    return PlanStep(
        name="moe.answer",
        service="moe_svc",
        endpoint="POST /v1/chat/completions",
        after=after,
        when=when,
        arguments=dict(arguments),
    )


def _reason(
    strategy: str, after: list[str], when: str | None = None, *, optional: bool = False
) -> PlanStep:
    return PlanStep(
        name="reasoning.reason",
        service="reasoning_svc",
        endpoint="POST /v1/reason",
        optional=optional,
        after=after,
        when=when,
        arguments={"strategy": strategy},
    )


def _answer_steps(plan: Plan) -> list[PlanStep]:
    # The steps whose answer the memory write-back stores: those that write the answer.
    back = next((s for s in plan.steps if s.name == "memory.write_assistant"), None)
    names = set(back.after if back is not None else ()) - {"memory.write_user"}
    return [s for s in plan.steps if s.name in names]


def unhonoured(plan: Plan, options: DispatchOptions) -> str | None:
    """The first answer control set in `options` that a step which may write the answer
    cannot honour (None: every one reaches the answer)."""
    inert: set[str] = set()  # set, but asking nothing of the answer
    if options.n == 1:
        inert.add("n")
    if not options.tools or options.tool_choice == "none":
        inert |= {"tools", "tool_choice", "parallel_tool_calls"}
    if options.response_format is not None and options.response_format.type == "text":
        inert.add("response_format")
    if options.logprobs is False:
        inert.add("logprobs")
    asked = [n for n in ANSWER_CONTROLS if getattr(options, n) is not None and n not in inert]
    for step in _answer_steps(plan):
        for name in asked:
            if name not in HONOURED.get(step.name, frozenset()):
                return name
    return None


def core_model_plan(intent: Intent, why: str, *, sees: bool = False) -> Plan:
    """moe_svc answers with the request's own constraint, tools or tool results, or
    (`sees`) looks at the turn's picture."""
    steps = [
        *_memory_steps(),
        _moe_answer(["memory.context"], mode="see" if sees else "chat"),
        _write_back("moe.answer"),
    ]
    return Plan(
        intent=intent,
        fallback=False,
        description=f"{why}: the core model answers (no other service honours it).",
        steps=steps,
    )


def make_plan(intent: Intent, text: str, *, fallback: bool, strategy: str | None = None) -> Plan:
    """The steps that answer `text` as `intent` (the safe plan when `fallback`)."""
    steps = _memory_steps()
    if fallback:
        steps += [_moe_answer(["memory.context"], mode="general"), _write_back("moe.answer")]
        return Plan(
            intent=intent,
            fallback=True,
            description="Safe plan: the general model answers with the conversation; "
            "no tools, retrieval or generation services.",
            steps=steps,
        )
    if intent == "factual":
        steps += [
            PlanStep(
                name="rag.answer",
                service="rag_svc",
                endpoint="POST /v1/answer",
                optional=True,
            ),
            _moe_answer(["memory.context", "rag.answer"], failed("rag.answer"), mode="unsourced"),
            _write_back("rag.answer", "moe.answer"),
        ]
        description = "rag_svc answers with citations (concurrently with the memory context)."
    elif intent == "reasoning":
        steps += [
            _reason(strategy or "auto", ["memory.context"], optional=True),
            _moe_answer(["reasoning.reason"], failed("reasoning.reason"), mode="direct"),
            _write_back("reasoning.reason", "moe.answer"),
        ]
        description = "reasoning_svc solves it with a strategy chosen for the problem."
    elif intent == "creative" and is_visual(text):
        steps += [
            PlanStep(
                name="creative.ideate",
                service="creative_svc",
                endpoint="POST /v1/creative/ideate",
                optional=True,
            ),
            _moe_answer(
                ["memory.context", "creative.ideate"], failed("creative.ideate"), mode="describe"
            ),
            _write_back("creative.ideate", "moe.answer"),
        ]
        description = "creative_svc ideates, draws and critiques (a picture was asked for)."
    elif intent == "creative":
        steps += [_moe_answer(["memory.context"], mode="creative"), _write_back("moe.answer")]
        description = "moe_svc writes it with a creative instruction."
    elif intent == "tool":
        call = detect_direct_call(text)
        if call is not None:
            steps += [
                PlanStep(
                    name="tools.invoke",
                    service="tools_svc",
                    endpoint=f"POST /v1/tools/{call.tool}/invoke",
                    optional=True,
                    arguments={"tool": call.tool, "arguments": call.arguments},
                ),
                _reason("react", ["memory.context", "tools.invoke"], failed("tools.invoke")),
                _write_back("tools.invoke", "reasoning.reason"),
            ]
            description = f"One direct tools_svc call ({call.tool})."
        elif asks_about_code(text):
            steps += [_moe_answer(["memory.context"], mode="chat"), _write_back("moe.answer")]
            description = "Code shown without a request to run it: moe_svc answers, nothing runs."
        else:
            steps += [_reason("react", ["memory.context"]), _write_back("reasoning.reason")]
            description = "reasoning_svc's ReAct agent uses tools_svc."
    else:
        steps += [_moe_answer(["memory.context"], mode="chat"), _write_back("moe.answer")]
        description = "moe_svc answers with the conversation."
    return Plan(intent=intent, fallback=False, description=description, steps=steps)
