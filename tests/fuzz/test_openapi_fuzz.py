"""Schema-driven fuzzing of every service's OpenAPI on the platform as `make up` runs it.

schemathesis reads each service's own `/openapi.json` and sends it requests
generated from that schema (valid ones, edge cases, and malformed ones); every
answer must be no 5xx, a status code the schema documents, and a body that
matches the documented schema for that status. The eight services run for
real through the launcher, with the embedded Redis and the real default model;
the gateway is fuzzed with the launcher's local API key.

`make test` runs a bounded, seeded pass (`FUZZ_MAX_EXAMPLES`, default 6 per
operation, seed 1: the same requests every run); `make fuzz` runs a deeper
pass with a fresh seed. A failure prints schemathesis' report with a `curl`
line that reproduces each finding.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.topology import SERVICES
from moe_svc.loader import ensure_default_model
from tests.helpers.platform import Launch, launched
from tests.helpers.servers import REPO_ROOT

pytestmark = pytest.mark.fuzz

# What the issue of a user on a bad day is: a crash, a status nobody documented, a
# body that is not what the schema says.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "6"))
SEED = os.environ.get("FUZZ_SEED", "1")  # "random": a fresh seed (make fuzz)


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    model_dir = ensure_default_model(REPO_ROOT / "var" / "models")
    env = {
        "MOE_MODEL_DIR": str(model_dir),
        # Bounded generations keep a fuzzed max_tokens from running for minutes.
        "MOE_MAX_CONTEXT": "384",
        "MOE_DEFAULT_MAX_TOKENS": "32",
        "RAG_WIKI_MAX_PAGES": "2",
        "RAG_WIKI_MAX_CHARS_PER_PAGE": "2000",
        # Fuzzed step counts stay short: each image runs its steps on the CPU. A larger
        # `steps` still gets the documented 400.
        "CREATIVE_DEFAULT_STEPS": "4",
        "CREATIVE_MAX_STEPS": "8",
        # Fuzzing is many quick requests from one key: the default limits would answer 429
        # (documented) to most of them and so test nothing else.
        "GATEWAY_RPM_LIMIT": "0",
        "GATEWAY_TPM_LIMIT": "0",
    }
    with launched(env, tmp_path_factory.mktemp("fuzz"), ready_timeout_s=600) as launch:
        yield launch


def service_url(launch: Launch, service: str) -> str:
    base = int(launch.env["PLATFORM_PORT_BASE"])
    return f"http://127.0.0.1:{base + SERVICES[service].port - 8000}"


def schemathesis_cli() -> list[str]:
    st = Path(sys.executable).parent / "st"
    return [str(st)] if st.exists() else [shutil.which("st") or "st"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_api_holds_under_fuzzing(launch: Launch, service: str, tmp_path: Path) -> None:
    url = service_url(launch, service)
    command = [
        *schemathesis_cli(),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    if SEED != "random":
        command += ["--seed", SEED, "--generation-deterministic"]
    if service == "gateway":
        key = (launch.var_dir / "gateway" / "local_api_key").read_text().strip()
        command += ["--header", f"Authorization: Bearer {key}"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{service}: schemathesis found problems\n{report[-12000:]}"
