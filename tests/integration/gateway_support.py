"""Start the gateway in front of `gateway_fakes` (every upstream) and a real Redis.

`gateway_stack` runs the gateway with `GATEWAY_AUTH_REQUIRED=false` (calls without a key
run as tenant default, role member) unless `env` says otherwise: the tests of keys and
auth pass `"GATEWAY_AUTH_REQUIRED": "true"`. `real` starts some upstreams for real
instead of the fake (each starter is given the fake, e.g. as its own upstreams).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionUserMessageParam,
)

from tests.helpers.servers import (
    REPO_ROOT,
    RunningRedis,
    RunningServer,
    start_fake,
    start_redis,
    start_service,
)

UPSTREAMS = ("router_svc", "memory_svc", "rag_svc", "creative_svc", "moe_svc")

# An OpenAI function tool, and a conversation that called it and holds its result.
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER: ChatCompletionUserMessageParam = {
    "role": "user",
    "content": "What is the weather in Paris?",
}
WEATHER_TURNS: list[ChatCompletionMessageParam] = [
    ASK_WEATHER,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18, "sky": "clear"}'},
]


StartReal = Callable[[RunningServer], RunningServer]


@contextmanager
def gateway_stack(
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    real: Mapping[str, StartReal] | None = None,
) -> Iterator[tuple[RunningServer, RunningServer, RunningRedis]]:
    """(gateway, fake upstreams, redis), stopped on exit; `real` upstreams started for real."""
    with ExitStack() as running:
        redis = start_redis(log_dir / "redis")
        running.callback(redis.stop)
        fake = start_fake("tests.helpers.gateway_fakes", log_dir, name="gateway_fakes")
        running.callback(fake.stop)
        upstreams = {name: fake.url for name in UPSTREAMS}
        for name, start in (real or {}).items():
            server = start(fake)
            running.callback(server.stop)
            upstreams[name] = server.url
        gateway = start_gateway(log_dir, redis, fake, env, upstreams)
        running.callback(gateway.stop)
        yield gateway, fake, redis


def start_gateway(
    log_dir: Path,
    redis: RunningRedis,
    fake: RunningServer,
    env: Mapping[str, str] | None = None,
    upstreams: Mapping[str, str] | None = None,
) -> RunningServer:
    """One more gateway on `redis`, every upstream the fake unless `upstreams` names it
    (auth off unless `env` says)."""
    return start_service(
        "gateway",
        log_dir,
        upstreams=upstreams or {name: fake.url for name in UPSTREAMS},
        env={
            "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_LOG_JSON": "false",
            "GATEWAY_AUTH_REQUIRED": "false",
            **(env or {}),
        },
    )


def admin(redis: RunningRedis, *args: str) -> str:
    """Run `python -m gateway.admin` against `redis`; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--redis-url", redis.url, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def keyed_client(gateway: RunningServer, key: str, timeout_s: float = 120) -> httpx.Client:
    """An HTTP client of the gateway's `/v1` that sends `key`."""
    return httpx.Client(
        base_url=f"{gateway.url}/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout_s,
    )
