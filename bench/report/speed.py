"""How fast the platform is: the core model's throughput, the gateway's overhead, memory
and tools latency, one `auto` request per intent as a timeline, and the context window.

Speeds are measured in rounds; each figure is the median round with the range of the
rounds as its spread (`bench.report` takes its rounds at the start, the middle and the
end of a run).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.report.figures import Figure, of_runs
from bench.report.quality import expert_delta
from bench.report.subject import Subject

__all__ = [
    "INTENT_PROMPTS",
    "Throughput",
    "context_window",
    "gateway_overhead",
    "memory_latency",
    "route_latency",
    "throughput",
    "timelines",
    "tools_latency",
]

# One request per intent for the latency breakdown (the pipeline's steps as a timeline).
INTENT_PROMPTS = {
    "factual": "Who wrote Animal Farm?",
    "reasoning": "A farmer has 3 fields of 14 rows with 25 plants each. How many plants?",
    "creative": "Write a haiku about the sea.",
    "tool": "Convert 72 F to C",
    "chat": "Hi! How are you today?",
}


@dataclass
class Throughput:
    tokens: int
    # clients -> aggregate tokens/s of each round
    aggregate: dict[int, list[float]] = field(default_factory=dict)
    # clients -> seconds to first token and between tokens, over every round
    ttft: dict[int, list[float]] = field(default_factory=dict)
    itl: dict[int, list[float]] = field(default_factory=dict)

    def figure(self, clients: int) -> Figure:
        return of_runs(self.aggregate[clients])


def throughput(subject: Subject, clients: list[int], tokens: int, rounds: int) -> Throughput:
    """Streams of `tokens` new tokens straight to moe_svc (`ignore_eos`), as
    `bench.moe_serving` measures them, for each number of concurrent clients."""
    from bench.moe_serving import timed_streams, ttft_and_itl

    result = Throughput(tokens)
    url = subject.urls["moe_svc"]
    asyncio.run(timed_streams(url, subject.model, 1, 4))  # warm-up
    for n in clients:
        for _ in range(rounds):
            streams, wall = asyncio.run(timed_streams(url, subject.model, n, tokens))
            ttft, itl = ttft_and_itl(streams)
            result.aggregate.setdefault(n, []).append(sum(s.tokens for s in streams) / wall)
            result.ttft.setdefault(n, []).extend(ttft)
            result.itl.setdefault(n, []).extend(itl)
    return result


def route_latency(subject: Subject, requests: int) -> float:
    """The router's p50 ms for `POST /v1/route` over the first `requests` held-out
    utterances (the classifier's embedding and head, over HTTP)."""
    from router_svc.intent_data import load_examples

    texts = [e.text for e in load_examples(split="test")[:requests]]
    with httpx.Client(base_url=subject.urls["router_svc"], timeout=60) as client:
        return statistics.median(
            _timed(lambda t=text: client.post("/v1/route", json={"text": t})) for text in texts
        )


def _median_rounds(samples: list[list[float]]) -> Figure:
    return of_runs([statistics.median(s) for s in samples])


def gateway_overhead(subject: Subject, requests: int, rounds: int) -> Figure:
    """The gateway's own time per request (its `x-gateway-overhead-ms` header) on one-token
    chat completions to the core model, one client."""
    samples = []
    for _ in range(rounds):
        values = []
        for _ in range(requests):
            reply = subject.chat(
                subject.model, [{"role": "user", "content": "Hi"}], 1, temperature=0
            )
            values.append(float(reply.headers["x-gateway-overhead-ms"]))
        samples.append(values)
    return _median_rounds(samples)


def memory_latency(subject: Subject, requests: int, rounds: int) -> dict[str, Figure]:
    """memory_svc's p50 ms to append a message and to assemble a 40-turn context."""
    content = "How do I make the most of a long weekend in Lisbon with two children? " * 3
    appends, contexts = [], []
    with httpx.Client(base_url=subject.urls["memory_svc"], timeout=60) as client:
        sid = f"report-{uuid.uuid4().hex[:8]}"
        for i in range(40):
            role = "user" if i % 2 == 0 else "assistant"
            client.post(f"/v1/sessions/{sid}/messages", json={"role": role, "content": content})
        for _ in range(rounds):
            a, c = [], []
            for _ in range(requests):
                a.append(
                    _timed(
                        lambda: client.post(
                            f"/v1/sessions/{sid}-w/messages",
                            json={"role": "user", "content": content},
                        )
                    )
                )
                c.append(
                    _timed(
                        lambda: client.post(
                            f"/v1/sessions/{sid}/context",
                            json={"budget_tokens": 1000, "include_summary": False},
                        )
                    )
                )
            appends.append(a)
            contexts.append(c)
    return {"append": _median_rounds(appends), "context": _median_rounds(contexts)}


def tools_latency(subject: Subject, requests: int, rounds: int) -> dict[str, Figure]:
    """tools_svc's p50 ms for a calculator call and a sandboxed `print(1)`."""
    calls = {
        "calculator": ("calculator", {"expression": "17*23+456"}),
        "python (sandbox)": ("python", {"code": "print(1)"}),
    }
    samples: dict[str, list[list[float]]] = {name: [] for name in calls}
    with httpx.Client(base_url=subject.urls["tools_svc"], timeout=60) as client:
        for _ in range(rounds):
            for name, (tool, arguments) in calls.items():
                samples[name].append(
                    [
                        _timed(
                            lambda t=tool, a=arguments: client.post(
                                f"/v1/tools/{t}/invoke", json={"arguments": a}
                            )
                        )
                        for _ in range(requests)
                    ]
                )
    return {name: _median_rounds(values) for name, values in samples.items()}


def _timed(call: Any) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def timelines(subject: Subject) -> dict[str, dict[str, Any]]:
    """For one `auto` request per intent: the client's wall time, the router's, each
    step's start and end (ms; a step starts when the steps it comes after have ended), and
    the tokens each expert took."""
    out: dict[str, dict[str, Any]] = {}
    for intent, prompt in INTENT_PROMPTS.items():
        before = subject.expert_counts()
        reply = subject.chat("auto", [{"role": "user", "content": prompt}], 64, temperature=0)
        experts = expert_delta(before, subject.expert_counts())
        pipeline = reply.body["pipeline"]
        after = {s["name"]: s["after"] for s in pipeline["plan"]["steps"]}
        ends: dict[str, float] = {}
        steps = []
        for step in pipeline["steps"]:
            if step["status"] == "skipped":
                continue
            start = max((ends.get(a, 0.0) for a in after.get(step["name"], [])), default=0.0)
            ends[step["name"]] = start + step["latency_ms"]
            steps.append({"name": step["name"], "start": start, "end": ends[step["name"]]})
        out[intent] = {
            "routed_to": pipeline["intent"],
            "client_ms": reply.seconds * 1000,
            "router_ms": pipeline["latency_ms"],
            "steps": steps,
            "experts": experts,
        }
    return out


def context_window(subject: Subject, turns: int) -> dict[str, Any]:
    """The model's window, and what memory_svc makes of a conversation longer than it: a
    fact stated in the first turn, `turns` turns of chat after it, then a question about
    the fact in the same session, through the platform."""
    card = subject.model_card()
    window = int(card.get("max_model_len") or 0)
    sid = f"report-long-{uuid.uuid4().hex[:8]}"
    filler = (
        "Tell me more about planning a long train journey across Europe, with the stops, "
        "the tickets, the luggage and what to see in each city along the way. "
    ) * 2
    messages = [("user", "My dog is called Pixel and she is a beagle.")] + [
        ("assistant" if i % 2 == 0 else "user", filler) for i in range(turns)
    ]
    conversation_tokens = 0
    with httpx.Client(base_url=subject.urls["memory_svc"], timeout=120) as client:
        for role, content in messages:
            written = client.post(
                f"/v1/sessions/{sid}/messages", json={"role": role, "content": content}
            )
            written.raise_for_status()
            conversation_tokens += int(written.json()["tokens"])
    reply = subject.chat(
        "auto",
        [{"role": "user", "content": "What is my dog called?"}],
        48,
        temperature=0,
        session_id=sid,
    )
    with httpx.Client(base_url=subject.urls["memory_svc"], timeout=300) as client:
        context = client.post(
            f"/v1/sessions/{sid}/context", json={"budget_tokens": window // 2}
        ).json()
    return {
        "window": window,
        "turns": turns + 2,
        "conversation_tokens": conversation_tokens,
        "context_tokens": context.get("total_tokens"),
        "budget_tokens": context.get("budget_tokens"),
        "recent_messages": context.get("recent_messages"),
        "dropped": context.get("dropped"),
        "summarised": context.get("summary") is not None,
        "recalled": "pixel" in reply.text.lower(),
        "answer": reply.text[:160],
    }
