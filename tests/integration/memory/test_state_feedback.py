"""User state (ETags, merge patch) and feedback on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.integration


@pytest.fixture
def client(memory: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=memory.url, timeout=30) as c:
        yield c


@pytest.fixture
def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def test_state_is_created_read_and_replaced_with_etags(client: httpx.Client, uid: str) -> None:
    url = f"/v1/users/{uid}/state"
    assert client.get(url).status_code == 404
    created = client.put(url, json={"name": "Ada", "prefs": {"tone": "brief"}})
    assert created.status_code == 201
    etag = created.headers["etag"]
    read = client.get(url)
    assert read.json() == {"name": "Ada", "prefs": {"tone": "brief"}}
    assert read.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304

    replaced = client.put(url, json={"name": "Ada L."}, headers={"If-Match": etag})
    assert replaced.status_code == 200 and replaced.headers["etag"] != etag
    stale = client.put(url, json={"name": "lost"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "etag_mismatch"
    assert client.get(url).json() == {"name": "Ada L."}
    create_only = client.put(url, json={}, headers={"If-None-Match": "*"})
    assert create_only.status_code == 412 and client.get(url).json() == {"name": "Ada L."}


def test_patch_is_a_json_merge_patch(client: httpx.Client, uid: str) -> None:
    url = f"/v1/users/{uid}/state"
    first = client.patch(url, json={"a": 1, "nested": {"x": 1, "y": 2}, "gone": True})
    assert first.status_code == 201
    patched = client.patch(
        url,
        json={"nested": {"y": None, "z": [1, 2]}, "gone": None, "b": "new"},
        headers={"If-Match": first.headers["etag"], "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json() == {"a": 1, "nested": {"x": 1, "z": [1, 2]}, "b": "new"}
    assert client.get(url).json() == patched.json()
    conflict = client.patch(url, json={"a": 2}, headers={"If-Match": first.headers["etag"]})
    assert conflict.status_code == 412
    assert client.get(url).json()["a"] == 1


def test_bad_state_input_is_refused_and_changes_nothing(client: httpx.Client, uid: str) -> None:
    url = f"/v1/users/{uid}/state"
    etag = client.put(url, json={"keep": 1}).headers["etag"]
    malformed = client.patch(url, content=b'{"a": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    not_object = client.patch(url, json=[1, 2])
    assert not_object.status_code == 400 and not_object.json()["error"]["code"] == "invalid_patch"
    assert client.put(url, json="text").json()["error"]["code"] == "invalid_state"
    huge = client.patch(url, json={"blob": "x" * 70_000})
    assert huge.status_code == 413
    read = client.get(url)
    assert read.json() == {"keep": 1} and read.headers["etag"] == etag


async def test_concurrent_conditional_writes_let_exactly_one_win(
    memory: RunningServer, uid: str
) -> None:
    url = f"{memory.url}/v1/users/{uid}/state"
    async with httpx.AsyncClient(timeout=30) as http:
        etag = (await http.put(url, json={"n": 0})).headers["etag"]
        replies = await asyncio.gather(
            *(http.patch(url, json={"n": i}, headers={"If-Match": etag}) for i in range(1, 11))
        )
        winners = [r for r in replies if r.status_code == 200]
        assert len(winners) == 1
        assert sorted(r.status_code for r in replies) == [200] + [412] * 9
        assert (await http.get(url)).json() == winners[0].json()

        # Unconditional patches all apply: none is lost to a concurrent one.
        await asyncio.gather(*(http.patch(url, json={f"k{i}": i}) for i in range(10)))
        final = (await http.get(url)).json()
    assert all(final[f"k{i}"] == i for i in range(10))


def test_feedback_is_one_rating_per_message_listable_and_countable(
    client: httpx.Client, uid: str
) -> None:
    sid = f"s-{uid}"
    sent = client.post(
        f"/v1/sessions/{sid}/messages",
        json={
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye."},
            ],
            "user_id": uid,
        },
    ).json()["data"]
    hello, goodbye = sent[1]["id"], sent[3]["id"]

    first = client.post(
        "/v1/feedback", json={"session_id": sid, "message_id": hello, "rating": 1, "comment": "ok"}
    )
    assert first.status_code == 201
    body = first.json()
    assert body["user_id"] == uid and body["message_content"] == "Hello! How can I help?"
    client.post("/v1/feedback", json={"session_id": sid, "message_id": goodbye, "rating": 1})
    changed = client.post(
        "/v1/feedback", json={"session_id": sid, "message_id": hello, "rating": -1}
    )
    assert changed.status_code == 200 and changed.json()["id"] == body["id"]
    assert changed.json()["comment"] is None

    page = client.get("/v1/feedback", params={"session_id": sid}).json()
    assert page["counts"] == {"total": 2, "positive": 1, "negative": 1}
    assert [f["message_id"] for f in page["data"]] == [goodbye, hello]  # newest first
    negative = client.get("/v1/feedback", params={"user_id": uid, "rating": -1}).json()
    assert [f["message_id"] for f in negative["data"]] == [hello]
    assert negative["counts"] == {"total": 1, "positive": 0, "negative": 1}
    by_user = client.get("/v1/feedback", params={"user_id": uid, "limit": 1}).json()
    assert len(by_user["data"]) == 1 and by_user["has_more"] is True
    everything = client.get("/v1/feedback").json()["counts"]
    assert everything["total"] >= 2

    unknown_message = client.post(
        "/v1/feedback", json={"session_id": sid, "message_id": "msg_nope", "rating": 1}
    )
    assert unknown_message.status_code == 404
    assert unknown_message.json()["error"]["param"] == "message_id"
    unknown_session = client.post(
        "/v1/feedback", json={"session_id": "s-nope", "message_id": hello, "rating": 1}
    )
    assert unknown_session.status_code == 404
    bad_rating = client.post(
        "/v1/feedback", json={"session_id": sid, "message_id": hello, "rating": 5}
    )
    assert bad_rating.status_code == 400 and bad_rating.json()["error"]["param"] == "rating"
    assert client.get("/v1/feedback", params={"rating": 3}).status_code == 400
    after = client.get("/v1/feedback", params={"session_id": sid}).json()["counts"]
    assert after == {"total": 2, "positive": 1, "negative": 1}


def test_a_user_whose_rating_changed_is_erased_with_its_counts(
    client: httpx.Client, uid: str
) -> None:
    sid = f"s-{uid}"
    sent = client.post(
        f"/v1/sessions/{sid}/messages",
        json={"role": "assistant", "content": "Hello!", "user_id": uid},
    ).json()
    before = client.get("/v1/feedback").json()["counts"]
    for rating in (1, -1):  # the user's positive count goes back to 0
        client.post(
            "/v1/feedback", json={"session_id": sid, "message_id": sent["id"], "rating": rating}
        ).raise_for_status()

    erased = client.delete(f"/v1/users/{uid}")
    assert erased.status_code == 200 and erased.json()["feedback"] == 1
    assert client.get("/v1/feedback").json()["counts"] == before
