"""Domain corpora built from the installed packages, and the generated maths set."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from moe_svc.specialisation.corpora import build_corpora, read_documents, site_packages
from moe_svc.specialisation.domains import DOMAINS
from moe_svc.specialisation.mathgen import math_documents


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpora")
    build_corpora(out)
    return out


def test_every_domain_has_disjoint_train_and_held_out_text(corpora: Path) -> None:
    manifest = json.loads((corpora / "manifest.json").read_text())
    assert list(manifest["domains"]) == list(DOMAINS)
    for domain in DOMAINS:
        train = read_documents(corpora / domain / "train.txt")
        val = read_documents(corpora / domain / "val.txt")
        # One in ten of each source is held out: with rounding per source, a little over.
        assert len(train) >= 8.5 * len(val) > 0, domain
        assert not set(train) & set(val), domain
        stats = manifest["domains"][domain]
        assert stats["val_chars"] == sum(len(d) for d in val)
        assert all(s["licence"] for s in stats["sources"].values())


def test_domains_hold_what_their_names_say(corpora: Path) -> None:
    def text(domain: str) -> str:
        return (corpora / domain / "train.txt").read_text()

    assert "Answer:" in text("mathematics")
    assert "def " in text("code") and "return" in text("code")
    assert re.search(r"[\u0400-\u04ff]{4}", text("languages"))  # Cyrillic (bgwiki, Dostoevsky)
    assert "<|im_start|>assistant" in text("common_sense")
    assert (
        "= uno"
        in (corpora / "languages" / "train.txt").read_text()
        + (corpora / "languages" / "val.txt").read_text()
    )


def test_quality_benchmarks_held_out_text_is_never_trained_on(corpora: Path) -> None:
    lee = site_packages() / "gensim" / "test" / "test_data" / "lee.cor"
    first = lee.read_text(encoding="latin-1").splitlines()[0].strip()[:80]
    for domain in DOMAINS:
        for split in ("train", "val"):
            assert first not in (corpora / domain / f"{split}.txt").read_text(), domain


def test_build_is_deterministic(corpora: Path, tmp_path: Path) -> None:
    build_corpora(tmp_path)
    for domain in ("mathematics", "history"):
        for split in ("train", "val"):
            name = f"{domain}/{split}.txt"
            assert (tmp_path / name).read_bytes() == (corpora / name).read_bytes()


def test_generated_maths_answers_are_exact() -> None:
    docs = math_documents(400, seed=3)
    assert docs == math_documents(400, seed=3)
    checked = 0
    for doc in docs:
        if m := re.match(r"Compute \((\d+) ([-+*]) (\d+)\) \* (\d+)\.", doc):
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            value = {"+": a + b, "-": a - b, "*": a * b}[op] * c
            assert doc.endswith(f"Answer: {value}")
            checked += 1
        elif m := re.match(r"What is (\d+/\d+|\d+) \+ (\d+/\d+|\d+)\?", doc):
            assert doc.endswith(f"Answer: {Fraction(m[1]) + Fraction(m[2])}")
            checked += 1
        elif m := re.match(r"Solve for x: (\d+)x \+ (-?\d+) = (-?\d+)\.", doc):
            x = int(doc.rsplit("x = ", 1)[1])
            assert int(m[1]) * x + int(m[2]) == int(m[3])
            checked += 1
        elif m := re.match(r"A farm has chickens and cows: (\d+) heads and (\d+) legs", doc):
            cows = int(doc.rsplit("Answer: ", 1)[1].split()[0])
            heads, legs = int(m[1]), int(m[2])
            assert 2 * (heads - cows) + 4 * cows == legs
            checked += 1
    assert checked >= 150
