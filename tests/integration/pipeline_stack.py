"""The real pipeline behind the router, started once for a test module.

router_svc fanning out to the real memory_svc (on real Redis), rag_svc, reasoning_svc
and tools_svc; moe_svc's chat API and creative_svc are the scripted stand-ins of
tests/helpers/router_fakes.py, answering by RULES. Used by the router's dispatch
tests and by the gateway's pipeline tests (which put the gateway in front).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.servers import (
    RunningRedis,
    RunningServer,
    start_fake,
    start_redis,
    start_service,
    wait_ready,
)
from tests.integration.memory.harness import shared_tokenizer

__all__ = ["BELL", "RULES", "PipelineStack", "gateway_in_front", "pipeline_stack"]

BELL = (
    "Alexander Graham Bell was granted the first US patent for the telephone on 7 March 1876. "
    "Elisha Gray filed a caveat for a similar device on the same day."
)
RULES = [
    # rag_svc's answer prompt carries the retrieved passage.
    {
        "contains": "granted the first US patent",
        "reply": "Bell patented the telephone in 1876 [1].",
    },
    {
        "contains": "short Python 3 program",
        "reply": "```python\nheads, legs = 30, 74\nprint((legs - 2 * heads) // 2)\n```",
    },
    {
        "contains": "You can use these tools",
        "reply": [
            "Thought: check the clock\nAction: datetime_now\n"
            'Action Input: {"timezone": "Asia/Tokyo"}',
            "Thought: done\nFinal Answer: It is evening in Tokyo.",
        ],
    },
    {"contains": "creative writer", "reply": "Rain on the window, a quiet city sleeps."},
]


@dataclass
class PipelineStack:
    fake: RunningServer
    redis: RunningRedis
    memory: RunningServer
    tools: RunningServer
    rag: RunningServer
    reasoning: RunningServer
    router: RunningServer

    @property
    def services(self) -> dict[str, str]:
        """URL of every service behind the gateway (stand-ins included), by name."""
        return {
            "memory_svc": self.memory.url,
            "rag_svc": self.rag.url,
            "reasoning_svc": self.reasoning.url,
            "creative_svc": self.fake.url,
            "tools_svc": self.tools.url,
            "moe_svc": self.fake.url,
            "router_svc": self.router.url,
        }


@contextmanager
def pipeline_stack(root: Path) -> Iterator[PipelineStack]:
    """Start the stack under `root` (rag_svc with its empty `docs` collection); stop it on exit."""
    started: list[Any] = []
    try:
        fake = start_fake(
            "tests.helpers.router_fakes",
            root,
            name="fakes",
            env={"FAKE_DEFAULT_REPLY": "Hello! How can I help?"},
        )
        started.append(fake)
        redis = start_redis(root / "redis")
        started.append(redis)
        rag = start_service(
            "rag_svc", root, upstreams={"moe_svc": fake.url}, env={"RAG_WIKI_ENABLED": "false"}
        )
        started.append(rag)
        memory = start_service(
            "memory_svc",
            root,
            upstreams={"rag_svc": rag.url, "moe_svc": fake.url},
            env={
                "MEMORY_REDIS_URL": redis.url,
                "MEMORY_TOKENIZER_FILE": str(shared_tokenizer()),
                "MEMORY_TOKEN_COUNTER": "local",
            },
        )
        started.append(memory)
        tools = start_service("tools_svc", root, upstreams={"rag_svc": rag.url})
        started.append(tools)
        reasoning = start_service(
            "reasoning_svc", root, upstreams={"moe_svc": fake.url, "tools_svc": tools.url}
        )
        started.append(reasoning)
        router = start_service(
            "router_svc",
            root,
            upstreams={
                "memory_svc": memory.url,
                "rag_svc": rag.url,
                "reasoning_svc": reasoning.url,
                "creative_svc": fake.url,
                "tools_svc": tools.url,
                "moe_svc": fake.url,
            },
            # Retrieval that is down must not hold the answer for long.
            env={"ROUTER_RAG_TIMEOUT_S": "30", "ROUTER_LOG_JSON": "false"},
        )
        started.append(router)
        wait_ready(rag)
        # rag_svc creates the empty `docs` collection itself (RAG_DEFAULT_COLLECTIONS).
        assert httpx.get(f"{rag.url}/v1/collections/docs", timeout=30).json()["documents"] == 0
        httpx.put(f"{fake.url}/script", json=RULES).raise_for_status()
        yield PipelineStack(fake, redis, memory, tools, rag, reasoning, router)
    finally:
        for server in reversed(started):
            server.stop()


@contextmanager
def gateway_in_front(stack: PipelineStack, root: Path, **env: str) -> Iterator[RunningServer]:
    """The real gateway in front of `stack`, on its Redis; `env` adds GATEWAY_* settings."""
    gateway = start_service(
        "gateway",
        root,
        upstreams=stack.services,
        env={"GATEWAY_REDIS_URL": stack.redis.url, **env},
    )
    try:
        yield gateway
    finally:
        gateway.stop()
