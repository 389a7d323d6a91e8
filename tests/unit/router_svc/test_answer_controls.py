"""OpenAI's answer controls in the router: which plan a turn with tools or a tool result
runs, which controls a plan refuses, and the choices put together from a stream."""

from __future__ import annotations

import pytest

from common.contracts.openai import ChatChunkChoice
from common.contracts.router import INTENTS, DispatchOptions, DispatchRequest, Intent
from common.errors import BadRequest
from router_svc.conversation import agent_messages, parse_conversation
from router_svc.plans import core_model_plan, make_plan, unhonoured
from router_svc.settings import RouterSettings
from router_svc.streamed_choices import StreamedChoices

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f"}}


def _conversation(*messages: dict[str, object]) -> DispatchRequest:
    return DispatchRequest.model_validate({"messages": list(messages)})


def test_a_tool_result_after_its_call_continues_the_conversation() -> None:
    request = _conversation(
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    )
    conversation = parse_conversation(request, RouterSettings())
    assert conversation.text == "Weather in Paris?" and conversation.is_agent
    messages = agent_messages("chat", conversation, None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["tool_calls"][0]["id"] == "call_1"
    assert messages[3]["tool_call_id"] == "call_1"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": "18C"}],
        [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "18C"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    ],
    ids=["no user turn", "no call before the result", "assistant last"],
)
def test_a_conversation_that_does_not_end_in_a_turn_to_answer_is_refused(
    messages: list[dict[str, object]],
) -> None:
    with pytest.raises(BadRequest):
        parse_conversation(_conversation(*messages), RouterSettings())


def test_the_core_model_plan_honours_every_control() -> None:
    options = DispatchOptions.model_validate(
        {"seed": 1, "stop": ["x"], "n": 2, "logprobs": True, "tools": [TOOL], "top_p": 0.5}
    )
    assert unhonoured(core_model_plan("factual", "tools"), options) is None
    assert unhonoured(make_plan("chat", "Hi", fallback=False), options) is None


@pytest.mark.parametrize("field", ["seed", "stop", "top_p", "logprobs", "n"])
@pytest.mark.parametrize("intent", ["factual", "reasoning"])
def test_a_plan_another_service_answers_refuses_what_it_cannot_honour(
    field: str, intent: Intent
) -> None:
    value = {"seed": 1, "stop": "x", "top_p": 0.5, "logprobs": True, "n": 2}[field]
    options = DispatchOptions.model_validate({field: value, "temperature": 0.1})
    plan = make_plan(intent, "Why is the sky blue?", fallback=False)
    assert unhonoured(plan, options) == field


def test_controls_that_ask_nothing_are_not_refused() -> None:
    options = DispatchOptions.model_validate(
        {"n": 1, "logprobs": False, "tools": [TOOL], "tool_choice": "none", "max_tokens": 9}
    )
    for intent in INTENTS:
        assert unhonoured(make_plan(intent, "Who won?", fallback=False), options) is None


def test_streamed_pieces_make_the_choices_of_the_whole_answer() -> None:
    assembled = StreamedChoices()
    pieces = [
        {"index": 0, "delta": {"role": "assistant", "content": ""}},
        {"index": 1, "delta": {"content": "Hel"}},
        {
            "index": 0,
            "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]},
        },
        {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}},
        {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}},
        {"index": 1, "delta": {"content": "lo"}, "finish_reason": "length"},
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    ]
    for piece in pieces:
        assembled.add(ChatChunkChoice.model_validate(piece))
    first, second = assembled.choices()
    assert first.finish_reason == "tool_calls" and first.message.content is None
    assert first.message.tool_calls is not None
    call = first.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("c1", "f", '{"a": 1}')
    assert (second.message.content, second.finish_reason) == ("Hello", "length")
