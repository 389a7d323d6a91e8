"""A turn with a picture goes to the core model's vision path whatever its text's intent;
a question about an earlier picture ("what did you draw?") shows the model that picture."""

from __future__ import annotations

from typing import Any

from common.contracts.router import DispatchRequest
from router_svc.conversation import model_messages, parse_conversation
from router_svc.settings import RouterSettings
from tests.helpers.router_unit_fakes import FakeUpstreams
from tests.unit.router_svc.conftest import AppClient

PNG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
DRAWN = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _conversation(settings: RouterSettings, messages: list[dict[str, Any]]) -> Any:
    request = DispatchRequest.model_validate({"messages": messages})
    return parse_conversation(request, settings)


def test_the_model_sees_the_turn_as_sent_and_nothing_else(settings: RouterSettings) -> None:
    question = {"type": "text", "text": "What is in this picture?"}
    conversation = _conversation(
        settings,
        [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": [question, PNG]},
        ],
    )
    assert conversation.text == "What is in this picture?"
    assert model_messages("see", conversation, None) == [
        {"role": "user", "content": [question, PNG]}
    ]


def test_a_picture_alone_is_a_turn(settings: RouterSettings) -> None:
    conversation = _conversation(settings, [{"role": "user", "content": [PNG]}])
    assert conversation.seen == [PNG] and conversation.text == ""


def test_a_question_about_the_drawing_shows_the_model_the_drawing(
    settings: RouterSettings,
) -> None:
    drew: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": "Hi"}, DRAWN]}
    earlier: list[dict[str, Any]] = [{"role": "user", "content": "Draw a sneaker"}, drew]
    asked = _conversation(settings, [*earlier, {"role": "user", "content": "What did you draw?"}])
    assert asked.seen == [DRAWN, {"type": "text", "text": "What did you draw?"}]
    # another question in the same conversation is not about the picture
    other = _conversation(
        settings, [*earlier, {"role": "user", "content": "What is the capital of France?"}]
    )
    assert other.seen == []


async def test_a_factual_sounding_question_with_a_picture_takes_the_vision_path(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    parts = [{"type": "text", "text": "Who invented this?"}, PNG]
    async with app_client(settings) as client:
        response = await client.post(
            "/v1/dispatch",
            json={"messages": [{"role": "user", "content": parts}], "session_id": "s1"},
        )
    assert response.status_code == 200, response.text
    steps = {s["name"]: s["status"] for s in response.json()["pipeline"]["steps"]}
    assert steps["moe.answer"] == "ok" and "rag.answer" not in steps
    sent = fake.called("moe_svc")[-1].body
    assert sent["messages"] == [{"role": "user", "content": parts}]
    assert sent["temperature"] == 0.0
    # memory keeps the turn's text and that it had a picture, not the picture's bytes
    assert fake.sessions["s1"][0]["content"] == "Who invented this? [image]"
