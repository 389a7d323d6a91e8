"""How an OpenAI chat request becomes a router_svc dispatch; how moe_svc's stream is relayed."""

from __future__ import annotations

import json

from gateway.chat import _dispatch_request, _Meter, _relay_event, _wire
from gateway.schemas import GatewayChatRequest


def _request(**fields: object) -> GatewayChatRequest:
    return GatewayChatRequest.model_validate(
        {
            "model": "auto",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                             {"type": "text", "text": "there"}]},
            ],
            **fields,
        }
    )  # fmt: skip


def test_roles_and_content_parts_are_flattened_for_the_router() -> None:
    payload = _request()
    sent = _wire(_dispatch_request(payload, stream=True))
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    assert sent["stream"] is True
    assert "session_id" not in sent and "user" not in sent
    assert sent["options"] == {}


def test_sampling_and_session_fields_are_passed_on() -> None:
    payload = _request(temperature=0.3, max_completion_tokens=20_000, session_id="s1", user="ana")
    sent = _wire(_dispatch_request(payload, stream=False))
    assert sent["options"] == {"temperature": 0.3, "max_tokens": 8192}
    assert sent["session_id"] == "s1" and sent["user"] == "ana"


def test_the_collections_extension_reaches_the_router() -> None:
    sent = _wire(_dispatch_request(_request(collections=["wiki", "docs"]), stream=False))
    assert sent["options"] == {"collections": ["wiki", "docs"]}


def test_a_user_id_memory_cannot_store_is_not_passed_on() -> None:
    sent = _wire(_dispatch_request(_request(user="ana lee/../x"), stream=False))
    assert "user" not in sent


# --- moe_svc's stream relayed: usage always counted, shown only when asked ---------------------


def _event(chunk: dict[str, object]) -> str:
    return json.dumps(chunk)


def test_the_usage_chunk_is_counted_but_not_shown_unless_asked() -> None:
    meter = _Meter()
    usage = {"prompt_tokens": 3, "completion_tokens": 12, "total_tokens": 15}
    final = _event({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    assert _relay_event(final, meter, include_usage=False) is None
    assert meter.tokens() == 12
    assert _relay_event(final, meter, include_usage=True) == f"data: {final}\n\n"


def test_experts_on_the_usage_chunk_still_reach_the_client() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 12, "total_tokens": 15}
    final = _event({"choices": [], "usage": usage, "experts": [{"per_layer": [[1]]}]})
    relayed = _relay_event(final, _Meter(), include_usage=False)
    assert relayed is not None
    assert json.loads(relayed.removeprefix("data: ")) == {
        "choices": [],
        "experts": [{"per_layer": [[1]]}],
    }


def test_a_stream_cut_short_is_charged_what_was_sent() -> None:
    meter = _Meter()
    for piece in ["Hello", " there, how", " are you"]:
        chunk = _event({"choices": [{"index": 0, "delta": {"content": piece}}]})
        assert _relay_event(chunk, meter, include_usage=False) == f"data: {chunk}\n\n"
    assert _relay_event("[DONE]", meter, include_usage=False) == "data: [DONE]\n\n"
    # No usage chunk came: 3 pieces, 24 characters -> max(3, 24 / 4).
    assert meter.tokens() == 6
    assert _Meter().tokens() == 0
