"""POST /v1/route: intent, calibrated scores, the plan, the fallback, and 4xx for bad input."""

from __future__ import annotations

from typing import Any

import pytest

from router_svc.route_decision import asks_about_the_user
from router_svc.settings import RouterSettings
from tests.unit.router_svc.conftest import AppClient


def step_names(body: dict[str, Any]) -> list[str]:
    return [s["name"] for s in body["plan"]["steps"]]


@pytest.mark.parametrize(
    ("text", "intent", "main_step"),
    [
        ("Who invented the telephone?", "factual", "rag.answer"),
        ("A farmer counts 74 legs", "reasoning", "reasoning.reason"),
        ("Draw a handbag", "creative", "creative.ideate"),
        ("Write a poem", "creative", "moe.answer"),
        ("Convert 72 F to C", "tool", "tools.invoke"),
        ("What time is it in Tokyo for a run?", "tool", "reasoning.reason"),
        ("Hi there", "chat", "moe.answer"),
    ],
)
async def test_each_intent_gets_its_plan(
    settings: RouterSettings, app_client: AppClient, text: str, intent: str, main_step: str
) -> None:
    async with app_client(settings) as client:
        response = await client.post("/v1/route", json={"text": text})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["intent"] == intent and not body["fallback"]
    assert body["confidence"] == max(body["scores"].values()) > settings.confidence_threshold
    assert abs(sum(body["scores"].values()) - 1) < 1e-3
    assert main_step in step_names(body)
    assert step_names(body)[:2] == ["memory.write_user", "memory.context"]


async def test_a_question_about_what_the_user_said_is_answered_from_the_conversation(
    settings: RouterSettings, app_client: AppClient
) -> None:
    """The classifier calls "Who is my manager?" factual; the wiki cannot know."""
    async with app_client(settings) as client:
        mine = (await client.post("/v1/route", json={"text": "Who is my manager?"})).json()
        world = (await client.post("/v1/route", json={"text": "Who invented radio?"})).json()

    assert mine["scores"]["factual"] == max(mine["scores"].values())
    assert mine["intent"] == "chat" and "rag.answer" not in step_names(mine)
    assert "memory.context" in step_names(mine) and "conversation" in mine["reason"]
    assert world["intent"] == "factual" and "rag.answer" in step_names(world)


@pytest.mark.parametrize(
    ("text", "about_the_user"),
    [
        ("What is my dog called?", True),
        ("Who is my manager again?", True),
        ("What did I tell you about the trip?", True),
        ("Do you remember my name?", True),
        ("Who invented the telephone?", False),
        ("How do I install the platform?", False),
        ("What is the capital of France?", False),
    ],
)
def test_questions_about_the_user_are_told_apart(text: str, about_the_user: bool) -> None:
    assert asks_about_the_user(text) is about_the_user


async def test_the_direct_tool_call_is_in_the_plan(
    settings: RouterSettings, app_client: AppClient
) -> None:
    async with app_client(settings) as client:
        body = (await client.post("/v1/route", json={"text": "Convert 72 F to C"})).json()

    invoke = next(s for s in body["plan"]["steps"] if s["name"] == "tools.invoke")
    assert invoke["arguments"] == {
        "tool": "unit_convert",
        "arguments": {"value": 72.0, "from_unit": "F", "to_unit": "C"},
    }


async def test_low_confidence_falls_back_to_the_safe_plan_and_says_so(
    settings: RouterSettings, app_client: AppClient
) -> None:
    async with app_client(settings) as client:
        body = (await client.post("/v1/route", json={"text": "mmm zzz"})).json()

    assert body["fallback"] and body["plan"]["fallback"]
    assert body["confidence"] < settings.confidence_threshold
    assert "below the threshold" in body["reason"]
    assert step_names(body) == [
        "memory.write_user",
        "memory.context",
        "moe.answer",
        "memory.write_assistant",
    ]


async def test_a_short_follow_up_is_read_with_the_previous_turn(
    settings: RouterSettings, app_client: AppClient
) -> None:
    history = [
        {"role": "user", "content": "Convert 72 F to celsius"},
        {"role": "assistant", "content": "22.2 C"},
    ]
    async with app_client(settings) as client:
        alone = (await client.post("/v1/route", json={"text": "and in kelvin?"})).json()
        followed = (
            await client.post("/v1/route", json={"text": "and in kelvin?", "history": history})
        ).json()

    assert alone["fallback"] and not alone["context_used"]
    assert followed["intent"] == "tool" and followed["context_used"] and not followed["fallback"]


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"text": ""}, 400, "text"),
        ({"text": "  \n"}, 400, "text"),
        ({}, 400, "text"),
        ({"text": "hi", "extra": 1}, 400, "extra"),
        ({"text": "hi", "history": [{"role": "robot", "content": "x"}]}, 400, "history.0.role"),
        ({"text": "x" * 8001}, 413, "text"),
        ({"text": "hi", "history": [{"role": "user", "content": "x"}] * 51}, 413, "history"),
        ({"text": "hi", "history": [{"role": "user", "content": "x" * 20_000}]}, 413, "history"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    settings: RouterSettings,
    app_client: AppClient,
    payload: dict[str, Any],
    status: int,
    param: str,
) -> None:
    async with app_client(settings) as client:
        response = await client.post("/v1/route", json=payload)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["service"] == "router_svc" and error["message"]
