"""POST /v1/dispatch against scripted upstreams: each intent's plan, concurrency, degraded
steps, memory writes, and 4xx for bad input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from router_svc.settings import RouterSettings
from tests.helpers.router_unit_fakes import FakeUpstreams
from tests.unit.router_svc.conftest import AppClient


async def dispatch(client: httpx.AsyncClient, text: str, **extra: Any) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": text}], **extra}
    return await client.post("/v1/dispatch", json=payload)


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in body["pipeline"]["steps"]}


async def test_factual_answers_with_sources_while_memory_runs_alongside(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.delays = {"rag_svc": 0.2, "memory_svc": 0.05}
    async with app_client(settings) as client:
        response = await dispatch(client, "Who invented the telephone?", session_id="s1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert "1876" in body["message"]["content"]
    pipeline = body["pipeline"]
    assert pipeline["intent"] == "factual" and pipeline["sourced"] is True
    assert pipeline["sources"][0]["doc_id"] == "bell" and pipeline["citations"]
    assert statuses(body) == {
        "memory.write_user": "ok",
        "memory.context": "ok",
        "rag.answer": "ok",
        "memory.write_assistant": "ok",
        "moe.answer": "skipped",
    }
    assert all(s["latency_ms"] >= 0 for s in pipeline["steps"])
    # Retrieval started before the memory context was read: the two ran concurrently.
    rag = fake.called("rag_svc")[0]
    context = next(c for c in fake.called("memory_svc") if c.path.endswith("/context"))
    assert rag.started < context.ended and context.started < rag.ended
    # The turn went to memory: the user's message first, then the answer, with ids.
    stored = fake.sessions["s1"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == body["message"]["content"]
    assert stored[0]["id"].startswith(body["id"])


async def test_a_sourced_answer_cut_by_max_tokens_says_length(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.rag_finish_reason = "length"
    async with app_client(settings) as client:
        cut = await dispatch(client, "Who invented the telephone?", options={"max_tokens": 20})
        fake.rag_finish_reason = "stop"
        whole = await dispatch(client, "Who invented the telephone?")

    assert cut.status_code == 200, cut.text
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    assert whole.json()["choices"][0]["finish_reason"] == "stop"
    assert fake.called("rag_svc")[0].body["max_tokens"] >= 16


async def test_retrieval_down_still_answers_marked_unsourced(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"rag_svc"}
    async with app_client(settings) as client:
        response = await dispatch(client, "Who invented the telephone?")

    assert response.status_code == 200, response.text
    body = response.json()
    pipeline = body["pipeline"]
    assert pipeline["sourced"] is False and pipeline["sources"] == []
    assert body["message"]["content"].startswith("Hello from the model.")
    assert "no sources" in body["message"]["content"]
    assert any("without sources" in n for n in pipeline["notes"])
    assert statuses(body)["rag.answer"] == "failed"
    assert statuses(body)["moe.answer"] == "ok"
    assert statuses(body)["memory.context"] == "skipped"


async def test_slow_retrieval_times_out_and_degrades(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.delays = {"rag_svc": 5.0}
    settings = settings.model_copy(update={"rag_timeout_s": 0.2})
    async with app_client(settings) as client:
        body = (await dispatch(client, "Who invented the telephone?")).json()

    step = next(s for s in body["pipeline"]["steps"] if s["name"] == "rag.answer")
    assert step["status"] == "timeout" and "0.2s" in step["error"]
    assert body["pipeline"]["sourced"] is False


async def test_reasoning_goes_to_reasoning_svc_with_its_trace(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (await dispatch(client, "A farmer counts 74 legs: how many cows?")).json()

    assert body["message"]["content"] == "7 cows"
    assert body["pipeline"]["reasoning"]["strategy"] == "pal"
    assert body["pipeline"]["reasoning"]["trace"][0]["kind"] == "answer"
    assert body["pipeline"]["tool_calls"][0]["tool"] == "python"
    # reasoning_svc's records do not say whether tools_svc cut the output: no key.
    assert "truncated" not in body["pipeline"]["tool_calls"][0]
    assert "answer" not in body["pipeline"]["reasoning"]
    assert fake.called("reasoning_svc")[0].body["strategy"] == "auto"


async def test_reasoning_down_answers_directly_and_says_so(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"reasoning_svc"}
    async with app_client(settings) as client:
        body = (await dispatch(client, "A farmer counts 74 legs")).json()

    assert body["message"]["content"] == "Hello from the model."
    assert statuses(body)["reasoning.reason"] == "failed"
    assert any("reasoning_svc was unavailable" in n for n in body["pipeline"]["notes"])


async def test_a_turn_ends_within_its_budget_when_reasoning_is_slow(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    # reasoning_svc would take 3 s; the turn has 1.5 s, 0.8 s of it kept for the fallback.
    fake.delays = {"reasoning_svc": 3.0}
    budgeted = settings.model_copy(update={"turn_timeout_s": 1.5, "fallback_reserve_s": 0.8})
    async with app_client(budgeted) as client:
        started = time.perf_counter()
        response = await dispatch(client, "A farmer counts 74 legs")
        elapsed = time.perf_counter() - started
    body = response.json()

    assert response.status_code == 200 and elapsed < 1.5
    assert body["message"]["content"] == "Hello from the model."
    step = next(s for s in body["pipeline"]["steps"] if s["name"] == "reasoning.reason")
    assert step["status"] == "timeout" and "turn's 1.5s budget" in step["error"]
    # reasoning_svc was told how long it had, so it can stop with its best answer.
    assert fake.called("reasoning_svc")[0].body["time_budget_s"] <= 0.7


async def test_a_required_step_past_the_turns_budget_is_a_504_turn_timeout(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.delays = {"moe_svc": 3.0}
    budgeted = settings.model_copy(update={"turn_timeout_s": 0.5})
    async with app_client(budgeted) as client:
        started = time.perf_counter()
        response = await dispatch(client, "Hello there", options={"intent": "chat"})
        elapsed = time.perf_counter() - started

    assert response.status_code == 504 and elapsed < 2.5
    error = response.json()["error"]
    assert error["code"] == "turn_timeout" and "turn's 0.5s budget" in error["message"]


async def test_a_picture_goes_to_creative_svc_and_comes_back_with_images(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (await dispatch(client, "Draw a handbag", options={"n_images": 2})).json()

    assert body["pipeline"]["intent"] == "creative"
    assert len(body["pipeline"]["images"]) == 2
    assert body["pipeline"]["images"][0] == {
        "b64_json": "iVBORw0KGgo=",
        "description": "A handbag in soft leather",
    }
    assert "handbag" in body["message"]["content"] and "Critique" in body["message"]["content"]
    assert fake.called("creative_svc")[0].body == {"task": "Draw a handbag", "n": 2}


async def test_creative_down_describes_the_picture_instead(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"creative_svc"}
    async with app_client(settings) as client:
        body = (await dispatch(client, "Draw a handbag")).json()

    assert body["pipeline"]["images"] == []
    assert statuses(body)["creative.ideate"] == "failed"
    system = fake.called("moe_svc")[-1].body["messages"][0]["content"]
    assert system.startswith("Describe in words the picture")


async def test_creative_text_is_written_by_the_model_at_a_creative_temperature(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (await dispatch(client, "Write a poem about rain")).json()

    assert body["message"]["content"] == "Hello from the model."
    request = fake.called("moe_svc")[-1].body
    assert request["temperature"] == settings.creative_temperature
    assert request["messages"][-1] == {"role": "user", "content": "Write a poem about rain"}


async def test_a_named_tool_call_runs_directly(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (await dispatch(client, "Convert 72 F to C")).json()

    assert body["message"]["content"] == "72 degF = 22.2222 degC"
    record = body["pipeline"]["tool_calls"][0]
    assert list(record) == ["tool", "arguments", "output", "error", "duration_ms", "truncated"]
    assert record["tool"] == "unit_convert" and record["truncated"] is False
    assert record["arguments"] == {"value": 72.0, "from_unit": "F", "to_unit": "C"}
    assert statuses(body)["tools.invoke"] == "ok"
    assert statuses(body)["reasoning.reason"] == "skipped"
    assert fake.called("reasoning_svc") == []


async def test_a_failing_direct_call_hands_over_to_the_agent(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.tool_error = "unknown unit 'F'"
    async with app_client(settings) as client:
        body = (await dispatch(client, "Convert 72 F to C")).json()

    assert body["message"]["content"] == "7 cows"
    assert fake.called("reasoning_svc")[0].body["strategy"] == "react"
    assert any("agent took over" in n for n in body["pipeline"]["notes"])


async def test_chat_uses_the_session_context_and_stores_the_turn(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.sessions["s2"] = [{"id": "old", "role": "user", "content": "My name is Ana."}]
    async with app_client(settings) as client:
        body = (await dispatch(client, "Hi, what is my name?", session_id="s2")).json()

    messages = fake.called("moe_svc")[-1].body["messages"]
    assert messages[0]["role"] == "system" and "Stored system." in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["My name is Ana.", "Hi, what is my name?"]
    assert [m["role"] for m in fake.sessions["s2"]] == ["user", "user", "assistant"]
    assert body["session_id"] == "s2"


async def test_a_follow_up_sent_alone_is_classified_with_the_stored_turns(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.sessions["s4"] = [
        {"id": "u1", "role": "user", "content": "Convert 72 F to celsius"},
        {"id": "a1", "role": "assistant", "content": "22.2 C"},
    ]
    async with app_client(settings) as client:
        with_session = (await dispatch(client, "and in kelvin?", session_id="s4")).json()
        without = (await dispatch(client, "and in kelvin?")).json()

    assert with_session["pipeline"]["intent"] == "tool"
    assert with_session["pipeline"]["context_used"] and not with_session["pipeline"]["fallback"]
    assert without["pipeline"]["fallback"]


async def test_memory_down_answers_without_the_history_and_says_so(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"memory_svc"}
    async with app_client(settings) as client:
        response = await dispatch(client, "Hello", session_id="s3")

    assert response.status_code == 200
    body = response.json()
    assert statuses(body)["memory.write_user"] == "failed"
    assert statuses(body)["memory.write_assistant"] == "skipped"
    assert any("Memory was unavailable" in n for n in body["pipeline"]["notes"])


async def test_the_model_down_fails_a_chat_with_its_error(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"moe_svc"}
    async with app_client(settings) as client:
        response = await dispatch(client, "Hello")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "upstream_unavailable"


async def test_the_model_overloaded_sheds_a_chat_with_its_retry_after(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.overloaded = {"moe_svc"}
    async with app_client(settings) as client:
        first = await dispatch(client, "Hello")
        # Inside the Retry-After, plans the model writes are refused before they start.
        later = [await dispatch(client, "Hello") for _ in range(3)]
        streamed = await client.post(
            "/v1/dispatch",
            json={"messages": [{"role": "user", "content": "Hello"}], "stream": True},
        )

    error = first.json()["error"]
    assert first.status_code == 503 and first.headers["Retry-After"] == "4"
    assert (error["code"], error["service"]) == ("overloaded", "moe_svc")
    for response in [*later, streamed]:
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "overloaded"
        assert 1 <= int(response.headers["Retry-After"]) <= 4
    # One call reached moe_svc: no circuit opened, and no more queued behind the backlog.
    assert len(fake.called("moe_svc")) == 1


async def test_a_direct_tool_call_runs_while_the_model_sheds(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.overloaded = {"moe_svc"}
    async with app_client(settings) as client:
        assert (await dispatch(client, "Hello")).status_code == 503
        tool = await dispatch(client, "What is 1234 * 5678?", options={"intent": "tool"})

    assert tool.status_code == 200
    assert statuses(tool.json())["tools.invoke"] == "ok"


async def test_low_confidence_runs_the_safe_plan(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (await dispatch(client, "zzz qqq")).json()

    assert body["pipeline"]["fallback"] is True
    assert any("below the threshold" in n for n in body["pipeline"]["notes"])
    assert [c.service for c in fake.calls if c.service != "memory_svc"] == ["moe_svc", "moe_svc"]


async def test_options_force_the_intent_and_strategy(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = (
            await dispatch(client, "Hello", options={"intent": "reasoning", "strategy": "tot"})
        ).json()

    assert body["pipeline"]["intent"] == "reasoning" and body["pipeline"]["confidence"] == 1.0
    assert fake.called("reasoning_svc")[0].body["strategy"] == "tot"


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": " "}]}, 400, "messages.0"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages.0"),
        ({"messages": [{"role": "user", "content": "hi"}], "session_id": "a b"}, 400, "session_id"),
        ({"messages": [{"role": "user", "content": "hi"}], "options": {"x": 1}}, 400, "options.x"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "options": {"strategy": "magic"}},
            400,
            "options.strategy",
        ),
        ({"messages": [{"role": "user", "content": "hi"}] * 101}, 413, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 8001}]}, 413, "messages.0.content"),
        (
            {"messages": [{"role": "user", "content": "x" * 8000}] * 3},
            413,
            "messages",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    settings: RouterSettings,
    app_client: AppClient,
    fake: FakeUpstreams,
    payload: dict[str, Any],
    status: int,
    param: str,
) -> None:
    async with app_client(settings) as client:
        response = await client.post("/v1/dispatch", json=payload)

    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert fake.calls == []


@pytest.mark.parametrize(
    ("setting", "option", "sent"),
    [
        ([], None, None),  # every collection the caller may read: rag_svc decides
        (["wiki"], None, ["wiki"]),  # the deployment's choice
        (["wiki"], ["docs", "manuals"], ["docs", "manuals"]),  # the request's choice wins
    ],
)
async def test_factual_questions_search_the_collections_asked_for(
    settings: RouterSettings,
    app_client: AppClient,
    fake: FakeUpstreams,
    setting: list[str],
    option: list[str] | None,
    sent: list[str] | None,
) -> None:
    settings = settings.model_copy(update={"rag_collections": setting})
    options = {"collections": option} if option is not None else {}
    async with app_client(settings) as client:
        response = await dispatch(client, "Who invented the telephone?", options=options)

    assert response.status_code == 200, response.text
    [rag] = fake.called("rag_svc")
    assert rag.path == "/v1/answer"
    assert rag.body.get("collections") == sent
    assert response.json()["pipeline"]["sources"][0]["doc_id"] == "bell"


async def test_a_malformed_collections_option_is_refused(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        response = await dispatch(client, "Who?", options={"collections": ["../etc"]})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith("options.collections")
    assert not fake.called("rag_svc")


async def test_a_known_users_turn_goes_to_fact_extraction_after_the_answer(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    remembering = settings.model_copy(update={"remember_facts": True})
    fake.delays = {"memory_svc": 0.3}
    async with app_client(remembering) as client:
        started = time.perf_counter()
        response = await dispatch(client, "hello, I am a nurse", user="u-1", session_id="s1")
        answered = time.perf_counter() - started
        await asyncio.sleep(0.6)  # the extraction runs on after the answer
        assert (await dispatch(client, "hello, I am a nurse")).status_code == 200  # no user
        refused = await dispatch(client, "hello, I am a nurse", user="../admin")
        await asyncio.sleep(0.6)

    assert response.status_code == 200, response.text
    assert refused.status_code == 400
    extracts = [c for c in fake.called("memory_svc") if c.path.endswith("/memories/extract")]
    assert [c.path for c in extracts] == ["/v1/users/u-1/memories/extract"]
    assert extracts[0].body["texts"] == ["hello, I am a nurse"]
    assert extracts[0].body["metadata"]["session_id"] == "s1"
    # The answer did not wait for it: only the session writes' delays are in its time.
    assert extracts[0].ended > started + answered


async def test_fact_extraction_is_off_unless_the_deployment_turns_it_on(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        response = await dispatch(client, "hello, I am a nurse", user="u-1")
        await asyncio.sleep(0.2)

    assert response.status_code == 200
    assert not [c for c in fake.called("memory_svc") if "/memories" in c.path]
