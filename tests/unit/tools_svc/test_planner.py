"""training_planner: the arithmetic on known values, and the seed's plan flagged."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import BadRequest
from tools_svc.tools.planner import PlannerArguments, plan

SEED = {
    "total_params": 400e9,
    "active_params": 50e9,
    "steps": 500_000,
    "batch_tokens": 4e6,
    "gpu_type": "H100",
    "gpu_count": 512,
    "claimed_tokens_per_s": 4000,
    "claimed_days": 60,
    "claimed_cost_usd": 8e6,
}


def run(**arguments: Any) -> dict[str, Any]:
    return plan(PlannerArguments.model_validate(arguments))


def test_seed_plan_is_flagged_as_inconsistent() -> None:
    result = run(**SEED)

    assert result["consistent"] is False
    computed = result["computed"]
    assert computed["tokens"] == 2e12
    assert computed["training_flops"] == pytest.approx(6e23)
    # 2T tokens at 4,000 tokens/s: 5e8 s, about 15.85 years.
    assert computed["days_at_claimed_tokens_per_s"] / 365.25 == pytest.approx(15.84, abs=0.01)
    assert computed["tokens_per_s_needed_for_claimed_days"] == pytest.approx(385_802.47)
    assert computed["implied_price_per_gpu_hour"] == pytest.approx(10.85, abs=0.01)
    first = result["issues"][0]
    assert "4,000 tokens/s" in first and "about 16 years" in first and "not 60 days" in first


def test_known_values_of_a_consistent_plan() -> None:
    # 7B dense on 1T tokens, 256 H100 at 40% MFU: 4.2e22 FLOPs / 1.0127e17 FLOP/s
    # = 414,714 s: 4.80 days, 29,491 GPU-hours, $73,728 at $2.50.
    result = run(
        total_params=7e9,
        tokens=1e12,
        batch_tokens=4e6,
        gpu_count=256,
        mfu=0.4,
        price_per_gpu_hour=2.5,
        claimed_days=4.8,
    )

    computed = result["computed"]
    assert computed["training_flops"] == pytest.approx(4.2e22)
    assert computed["cluster_flops_per_s"] == pytest.approx(256 * 989e12 * 0.4)
    assert computed["wall_clock_days"] == pytest.approx(4.7999, abs=1e-3)
    assert computed["gpu_hours"] == pytest.approx(29_491.07, abs=0.1)
    assert computed["cost_usd"] == pytest.approx(73_727.67, abs=0.1)
    assert computed["steps"] == pytest.approx(250_000)
    assert computed["tokens_per_s"] == pytest.approx(2.4112e6, rel=1e-3)
    assert result == {**result, "consistent": True, "issues": []}


def test_moe_uses_active_parameters() -> None:
    dense = run(total_params=50e9, tokens=1e12, gpu_count=64)["computed"]
    moe = run(total_params=400e9, active_params=50e9, tokens=1e12, gpu_count=64)["computed"]
    assert moe["wall_clock_days"] == dense["wall_clock_days"]


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"budget_usd": 1e5}, "over the $100,000 budget"),
        ({"mfu": 0.9}, "above what large runs achieve"),
        ({"claimed_days": 1}, "impossible"),
        ({"tokens": 5e12}, "not the 5T given"),
        ({"gpu_count": 8}, "TB"),  # 6.4 TB of training state on 8 x 80 GB
    ],
)
def test_each_inconsistency_is_reported(overrides: dict[str, Any], phrase: str) -> None:
    arguments = {k: v for k, v in SEED.items() if not k.startswith("claimed")}
    result = run(**{**arguments, **overrides})
    assert result["consistent"] is False
    assert any(phrase in issue for issue in result["issues"]), result["issues"]


def test_active_above_total_is_a_bad_argument() -> None:
    with pytest.raises(BadRequest) as info:
        run(total_params=1e9, active_params=2e9, tokens=1e9, gpu_count=1)
    assert info.value.param == "arguments.active_params"


def test_tokens_are_required_one_way_or_another() -> None:
    with pytest.raises(BadRequest, match="tokens"):
        run(total_params=1e9, steps=10, gpu_count=1)
