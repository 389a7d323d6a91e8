"""How an OpenAI chat request becomes a router_svc dispatch."""

from __future__ import annotations

from gateway.chat import _dispatch_payload
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
    sent = _dispatch_payload(payload, stream=True)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    assert sent["stream"] is True
    assert "session_id" not in sent and "user" not in sent


def test_sampling_and_session_fields_are_passed_on() -> None:
    payload = _request(temperature=0.3, max_completion_tokens=20_000, session_id="s1", user="ana")
    sent = _dispatch_payload(payload, stream=False)
    assert sent["options"] == {"temperature": 0.3, "max_tokens": 8192}
    assert sent["session_id"] == "s1" and sent["user"] == "ana"


def test_a_user_id_memory_cannot_store_is_not_passed_on() -> None:
    sent = _dispatch_payload(_request(user="ana lee/../x"), stream=False)
    assert "user" not in sent
