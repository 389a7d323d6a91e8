"""The vision evaluation reads which garment an answer names, and only one."""

from __future__ import annotations

import pytest

from moe_svc.vision.labels import garment_named


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("This is a T-shirt.", 0),
        ("A pair of trousers.", 1),
        ("It is a shirt.", 6),  # not the t-shirt
        ("This is an ankle boot.", 9),
        ("Boots.", 9),
        ("A sneaker", 7),
        ("This is a handbag.", 8),
        ("No, it is a sneaker, not a bag.", None),  # two garments: no single reading
        ("I cannot tell.", None),
    ],
)
def test_the_one_garment_an_answer_names(answer: str, label: int | None) -> None:
    assert garment_named(answer) == label
