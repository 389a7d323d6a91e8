"""One launched platform for the whole folder, moe_svc behind a fault proxy.

The platform is `make up`'s launcher with a tiny model and a two-page wiki (the faults
are about processes and wires, not answers), restart backoff 1 s, no rate limits, and
short chat timeouts so that a stalled moe_svc opens the gateway's circuit in seconds
(`tests.faults.harness.fault_env`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultPlatform, fault_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultPlatform]:
    with fault_platform(tmp_path_factory.mktemp("faults")) as platform:
        yield platform
