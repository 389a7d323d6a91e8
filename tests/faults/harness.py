"""Faults under load on a launched platform: inject one, watch what holds, time the recovery.

`FaultPlatform` wraps the platform that `tests.helpers.platform.launched` runs (with a
`FaultProxy` in front of moe_svc). `run_fault` drives one fault from start to end:

1. writes a fresh set of user data (a session turn, a long-term memory, a document,
   feedback) while the platform is ready;
2. starts background load (a few client tasks cycling through gateway requests);
3. injects the fault: SIGKILL a service or Redis (the launcher restarts it), or turns
   the proxy slow or into one that answers garbage;
4. times how long until the gateway's readiness says `degraded`, checks that the
   request needing the failed part fails fast with the shared error shape and that
   requests not needing it still succeed;
5. times the launcher's restart and the return to `ready` (the proxy is set back to
   `pass` for its faults), then checks that the failed request succeeds again and that
   every record written before any fault so far is still readable.

Everything it saw goes in a `FaultResult`; `problems` lists what did not hold. The
tests in this folder assert on it; `bench/chaos.py` prints it as a table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.faults.proxy import FaultProxy, Mode
from tests.helpers.platform import Launch, launched
from tests.helpers.servers import REPO_ROOT, free_port
from tests.helpers.tiny_llm import make_tiny_llm

__all__ = [
    "CHAT_TIMEOUT_S",
    "FAULTS",
    "KILLED_SERVICES",
    "Fault",
    "FaultPlatform",
    "FaultResult",
    "Load",
    "fault_env",
    "fault_platform",
    "run_fault",
]

# Every service but the gateway (the entry point; the launcher restarts it like the others).
KILLED_SERVICES = (
    "moe_svc",
    "rag_svc",
    "tools_svc",
    "memory_svc",
    "creative_svc",
    "reasoning_svc",
    "router_svc",
)

# The gateway requests of the load and of the checks, and what each needs to succeed.
# (tools_svc down sends a calculation to reasoning_svc's ReAct fallback, which still answers.)
NEEDS: dict[str, frozenset[str]] = {
    "calculator": frozenset({"redis", "router_svc", "tools_svc"}),
    "named_chat": frozenset({"redis", "moe_svc"}),
    "feedback": frozenset({"redis", "memory_svc"}),
    "search": frozenset({"redis", "rag_svc"}),
    "image": frozenset({"redis", "creative_svc"}),
}
LOAD_KINDS = ("calculator", "named_chat", "feedback", "search")
# Nothing answers a client later than this, whatever is down (the tests' timeouts are short).
HANG_S = 20.0


CHAT_TIMEOUT_S = 4.0


def fault_env(proxy: FaultProxy, moe_port: int, model_dir: str) -> dict[str, str]:
    """The launcher's environment: callers reach moe_svc through `proxy`."""
    return {
        "MOE_PORT": str(moe_port),
        "PLATFORM_UPSTREAM_URLS": json.dumps({"moe_svc": proxy.url}),
        "PLATFORM_RESTART_BACKOFF_S": "1",
        "MOE_MODEL_DIR": model_dir,
        "RAG_WIKI_MAX_PAGES": "2",
        "RAG_WIKI_MAX_CHARS_PER_PAGE": "3000",
        "GATEWAY_CHAT_TIMEOUT_S": str(CHAT_TIMEOUT_S),
        # The load runs on one key for minutes: the faults are not about rate limits.
        "GATEWAY_RPM_LIMIT": "0",
        "GATEWAY_TPM_LIMIT": "0",
    }


@dataclass(frozen=True)
class Fault:
    name: str
    # The process SIGKILLed (the launcher's name), or None for a proxy mode.
    kill: str | None = None
    mode: Mode | None = None
    # What is down while the fault lasts, for readiness and for NEEDS.
    down: str = ""
    # The request that needs the failed part: it must fail fast with this status.
    fails: str | None = None
    status: int = 503


FAULTS: dict[str, Fault] = {
    **{
        f"kill {name}": Fault(
            f"kill {name}",
            kill=name,
            down=name,
            fails={
                "moe_svc": "named_chat",
                "rag_svc": "search",
                "memory_svc": "feedback",
                "creative_svc": "image",
                "router_svc": "calculator",
            }.get(name),
        )
        for name in KILLED_SERVICES
    },
    "restart redis": Fault("restart redis", kill="redis", down="redis", fails="feedback"),
    # A stalled moe_svc: the first calls time out (504), then the breaker answers 503 at once.
    "slow moe_svc": Fault("slow moe_svc", mode="slow", down="moe_svc", fails="named_chat"),
    # A moe_svc answering 200 with a body outside its contract: 502, never a 500.
    "garbage moe_svc": Fault(
        "garbage moe_svc", mode="garbage", down="moe_svc", fails="named_chat", status=502
    ),
}


@dataclass
class Outcome:
    kind: str
    status: int  # 0: no HTTP answer (connection error)
    elapsed_s: float
    body: Any = None


@dataclass
class FaultResult:
    fault: str
    degraded_s: float | None = None
    restarted_s: float | None = None
    ready_s: float | None = None
    fail_fast_s: float | None = None
    load: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.problems


class FaultPlatform:
    """The launched platform, its admin key, the proxy in front of moe_svc, the data written."""

    def __init__(self, launch: Launch, proxy: FaultProxy, chat_timeout_s: float) -> None:
        self.launch = launch
        self.proxy = proxy
        self.chat_timeout_s = chat_timeout_s
        self.gateway = launch.gateway
        base = int(launch.env["PLATFORM_PORT_BASE"])
        self.memory = f"http://127.0.0.1:{base + 5}"
        self.redis_port = base + 79
        self.key = (launch.var_dir / "gateway" / "local_api_key").read_text().strip()
        self.client = httpx.Client(timeout=HANG_S + 10, trust_env=False)
        self.member_key = self._create_key()
        # tag -> (session id, message id, memory id, document id)
        self.written: dict[str, tuple[str, str, str, str]] = {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def close(self) -> None:
        self.client.close()

    def _create_key(self) -> str:
        """A member key made with the admin CLI: acknowledged once printed."""
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "GATEWAY_DATA_DIR": str(self.launch.var_dir),
        }
        result = subprocess.run(
            [sys.executable, "-m", "gateway.admin", "create", "--tenant", "faults"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    # -- requests ---------------------------------------------------------------------

    def request(self, kind: str, client: httpx.Client | None = None) -> Outcome:
        """One gateway request of `kind` (see NEEDS)."""
        method, url, body = self.spec(kind)
        started = time.monotonic()
        try:
            response = (client or self.client).request(method, url, json=body, headers=self.headers)
        except httpx.HTTPError:
            return Outcome(kind, 0, time.monotonic() - started)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        return Outcome(kind, response.status_code, time.monotonic() - started, parsed)

    def spec(self, kind: str) -> tuple[str, str, dict[str, Any] | None]:
        g = self.gateway
        if kind == "calculator":
            chat = {
                "model": "auto",
                "messages": [{"role": "user", "content": "calculate 2**64 / 3"}],
            }
            return "POST", f"{g}/v1/chat/completions", {**chat, "max_tokens": 8}
        if kind == "named_chat":
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            return "POST", f"{g}/v1/chat/completions", {**chat, "max_tokens": 4}
        if kind == "feedback":
            return "GET", f"{g}/v1/feedback?limit=5", None
        if kind == "search":
            return "POST", f"{g}/v1/collections/docs/search", {"query": "faults ledger", "k": 3}
        if kind == "image":
            body = {"prompt": "a shoe", "n": 1, "steps": 2, "response_format": "b64_json"}
            return "POST", f"{g}/v1/images/generations", body
        raise ValueError(f"unknown request kind {kind!r}")

    # -- readiness and the launcher -----------------------------------------------------

    def readiness(self) -> dict[str, Any] | None:
        try:
            return dict(self.client.get(f"{self.gateway}/readyz", timeout=5).json())
        except (httpx.HTTPError, ValueError):
            return None

    def is_ready(self) -> bool:
        return (self.readiness() or {}).get("status") == "ready"

    def shows_down(self, name: str) -> bool:
        readiness = self.readiness() or {}
        service = (readiness.get("services") or {}).get(name) or {}
        return readiness.get("status") == "degraded" and service.get("status") == "down"

    def pid(self, name: str) -> int:
        return int(self.launch.state()["processes"][name]["pid"])

    def wait(self, check: Callable[[], bool], timeout_s: float) -> float | None:
        """Seconds until `check` holds, or None after `timeout_s`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.launch.process.poll() is not None:
                raise AssertionError(f"the launcher exited:\n{self.launch.output()[-3000:]}")
            if check():
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    # -- user data ----------------------------------------------------------------------

    def write_data(self, tag: str) -> None:
        """A session turn, a memory, a document and feedback; each acknowledged (2xx)."""
        sid, user = f"faults-{tag}", f"faults-user-{tag}"
        chat = self.client.post(
            f"{self.gateway}/v1/chat/completions",
            headers=self.headers,
            json={
                "model": "auto",
                "session_id": sid,
                "user": user,
                "messages": [{"role": "user", "content": "calculate 6*7"}],
                "max_tokens": 8,
            },
        )
        chat.raise_for_status()
        message_id = str(chat.json()["message_id"])
        memory = self.client.post(
            f"{self.memory}/v1/users/{user}/memories", json={"text": f"{tag} likes red shoes"}
        )
        memory.raise_for_status()
        doc_id = f"faults-doc-{tag}"
        document = self.client.post(
            f"{self.gateway}/v1/collections/docs/documents",
            headers=self.headers,
            json={"documents": [{"id": doc_id, "text": f"The faults ledger entry {tag}."}]},
        )
        document.raise_for_status()
        feedback = self.client.post(
            f"{self.gateway}/v1/feedback",
            headers=self.headers,
            json={"session_id": sid, "message_id": message_id, "rating": 1},
        )
        feedback.raise_for_status()
        self.written[tag] = (sid, message_id, str(memory.json()["memory"]["id"]), doc_id)

    def missing_data(self) -> list[str]:
        """What was acknowledged before and cannot be read now (empty: nothing lost)."""
        missing = []
        member = {"Authorization": f"Bearer {self.member_key}"}
        if self.client.get(f"{self.gateway}/v1/models", headers=member).status_code != 200:
            missing.append("the API key made before the faults")
        for tag, (sid, message_id, memory_id, doc_id) in self.written.items():
            user = f"faults-user-{tag}"
            messages = self.client.get(f"{self.memory}/v1/sessions/{sid}/messages")
            if messages.status_code != 200 or len(messages.json().get("data", [])) < 2:
                missing.append(f"session {sid} ({messages.status_code})")
            memory = self.client.get(f"{self.memory}/v1/users/{user}/memories/{memory_id}")
            if memory.status_code != 200:
                missing.append(f"memory {memory_id} ({memory.status_code})")
            found = self.client.post(
                f"{self.gateway}/v1/collections/docs/search",
                headers=self.headers,
                json={"query": f"faults ledger entry {tag}", "k": 20, "mode": "bm25"},
            )
            ids = (
                {r.get("doc_id") for r in found.json().get("results", [])}
                if found.is_success
                else set()
            )
            if doc_id not in ids:
                missing.append(f"document {doc_id} ({found.status_code})")
            rated = self.client.get(
                f"{self.gateway}/v1/feedback", headers=self.headers, params={"session_id": sid}
            )
            rated_ids = (
                {f.get("message_id") for f in rated.json().get("data", [])}
                if rated.is_success
                else set()
            )
            if message_id not in rated_ids:
                missing.append(f"feedback on {message_id} ({rated.status_code})")
        return missing


class Load:
    """`tasks` clients, each sending the LOAD_KINDS in turn until stopped; every answer kept."""

    def __init__(self, platform: FaultPlatform, tasks: int, pause_s: float = 0.05) -> None:
        self.platform = platform
        self.tasks = tasks
        self.pause_s = pause_s
        self.outcomes: list[tuple[float, Outcome]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Plain threads with their own clients: the load must not share the checks' pool.
        def client_loop(index: int) -> None:
            with httpx.Client(timeout=HANG_S + 10, trust_env=False) as client:
                turn = index
                while not self._stop.is_set():
                    kind = LOAD_KINDS[turn % len(LOAD_KINDS)]
                    outcome = self.platform.request(kind, client)
                    self.outcomes.append((time.monotonic(), outcome))
                    turn += 1
                    self._stop.wait(self.pause_s)

        workers = [threading.Thread(target=client_loop, args=(i,)) for i in range(self.tasks)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(HANG_S + 15)


def _error_shape_problem(outcome: Outcome, status: int) -> str | None:
    error = (outcome.body or {}).get("error") if isinstance(outcome.body, dict) else None
    if outcome.status != status:
        return f"{outcome.kind} answered {outcome.status}, expected {status}: {outcome.body}"
    if not isinstance(error, dict) or not {"message", "type", "code", "request_id"} <= set(error):
        return f"{outcome.kind}'s {status} is not in the shared error shape: {outcome.body}"
    return None


@contextmanager
def _proxy_mode(platform: FaultPlatform, mode: Mode | None) -> Iterator[None]:
    if mode is not None:
        platform.proxy.set_mode(mode)
    try:
        yield
    finally:
        if mode is not None:
            platform.proxy.set_mode("pass")


def run_fault(
    platform: FaultPlatform, fault: Fault, load_tasks: int = 3, ready_timeout_s: float = 120
) -> FaultResult:
    """Inject `fault` under load and report what held (see the module docstring)."""
    result = FaultResult(fault.name)
    if platform.wait(platform.is_ready, ready_timeout_s) is None:
        result.problems.append("the platform was not ready before the fault")
        return result
    tag = uuid.uuid4().hex[:8]
    platform.write_data(tag)
    with Load(platform, load_tasks) as load:
        time.sleep(1.0)  # the load is running before the fault
        started = time.monotonic()
        old_pid = platform.pid(fault.kill) if fault.kill else None
        with _proxy_mode(platform, fault.mode):
            if old_pid is not None:
                os.kill(old_pid, signal.SIGKILL)
            result.degraded_s = platform.wait(lambda: platform.shows_down(fault.down), 10)
            if result.degraded_s is None:
                result.problems.append(f"readiness did not show {fault.down} down within 10s")
            _check_during(platform, fault, result)
            if fault.kill is not None:
                result.restarted_s = platform.wait(
                    lambda: platform.pid(fault.kill or "") != old_pid, 30
                )
                if result.restarted_s is None:
                    result.problems.append("the launcher did not restart it within 30s")
        ready = platform.wait(platform.is_ready, ready_timeout_s)
        result.ready_s = None if ready is None else time.monotonic() - started
        if ready is None:
            result.problems.append(f"not ready again within {ready_timeout_s:.0f}s")
        _check_after(platform, fault, result)
    _judge_load(load, fault, started, result)
    return result


def _check_during(platform: FaultPlatform, fault: Fault, result: FaultResult) -> None:
    if fault.fails is not None:
        # A breaker opens after a few failures; the slow fault's first calls wait out
        # their timeouts (504) before it does.
        deadline = time.monotonic() + 6 * platform.chat_timeout_s + 10
        outcome = platform.request(fault.fails)
        while outcome.status == 504 and time.monotonic() < deadline:
            outcome = platform.request(fault.fails)
        problem = _error_shape_problem(outcome, fault.status)
        if problem:
            result.problems.append(f"during the fault: {problem}")
        result.fail_fast_s = outcome.elapsed_s
        if outcome.elapsed_s > 2.0:
            result.problems.append(f"{fault.fails} took {outcome.elapsed_s:.1f}s to fail")
    for kind in NEEDS:
        if kind == "image" or fault.down in NEEDS[kind]:
            continue
        outcome = platform.request(kind)
        if outcome.status != 200:
            result.problems.append(
                f"{kind} (does not need {fault.down}) answered {outcome.status}: {outcome.body}"
            )


def _check_after(platform: FaultPlatform, fault: Fault, result: FaultResult) -> None:
    if fault.fails is not None:
        # An open circuit lets a trial through after its reset time (5 s by default).
        outcome = platform.request(fault.fails)
        deadline = time.monotonic() + 30
        while outcome.status != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            outcome = platform.request(fault.fails)
        if outcome.status != 200:
            result.problems.append(f"after recovery {fault.fails} answered {outcome.status}")
    result.problems += [f"lost: {what}" for what in platform.missing_data()]


def _judge_load(load: Load, fault: Fault, started: float, result: FaultResult) -> None:
    for _, outcome in load.outcomes:
        result.load[str(outcome.status)] += 1
        result.slowest_s = max(result.slowest_s, outcome.elapsed_s)
    # Before the fault everything succeeds; during it, what does not need the failed part
    # succeeds and the rest fails with a clear 502/503/504, never a 500 or no answer.
    errors = [
        o
        for t, o in load.outcomes
        if o.status != 200
        and (t < started or fault.down not in NEEDS[o.kind] or o.status not in (502, 503, 504))
    ]
    for outcome in errors[:3]:
        result.problems.append(f"load: {outcome.kind} answered {outcome.status}: {outcome.body}")
    if result.slowest_s > HANG_S:
        result.problems.append(f"load: a request took {result.slowest_s:.1f}s (a hang)")
    if not load.outcomes:
        result.problems.append("load: no request completed")


@contextmanager
def fault_platform(var_dir: Path) -> Iterator[FaultPlatform]:
    """`make up`'s launcher in `var_dir`, moe_svc behind a `FaultProxy`, ready to fault."""
    moe_port = free_port()
    proxy = FaultProxy(moe_port, free_port())
    proxy.start()
    env = fault_env(proxy, moe_port, str(make_tiny_llm(var_dir / "tiny-llm")))
    try:
        with launched(env, var_dir) as launch:
            platform = FaultPlatform(launch, proxy, CHAT_TIMEOUT_S)
            try:
                yield platform
            finally:
                platform.close()
    finally:
        proxy.stop()
