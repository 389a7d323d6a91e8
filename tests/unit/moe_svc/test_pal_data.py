"""The generated word problems: every program verified, deterministic, never a held-out one."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from moe_svc.specialisation.pal_data import FAMILIES, HELD_OUT, Problem, generate, main, verify

NONE = Path("/nonexistent")


def test_every_family_gives_problems_whose_program_prints_the_answer() -> None:
    problems = list(generate(10 * len(FAMILIES), seed=1, held_out=NONE))
    assert Counter(p.family for p in problems) == {f: 10 for f in FAMILIES}
    assert all(verify(p) for p in problems)
    assert len({p.question for p in problems}) == len(problems)
    assert 0.1 < sum(p.distractor for p in problems) / len(problems) < 0.4


def test_a_program_that_prints_another_number_or_reaches_beyond_arithmetic_fails() -> None:
    good = Problem("What is 2 + 3?", "print(2 + 3)", 5.0, "test")
    assert verify(good)
    assert not verify(replace(good, program="print(2 * 3)"))
    assert not verify(replace(good, program="x = 5"))  # prints nothing
    assert not verify(replace(good, program="print(open('/etc/passwd').read())"))
    assert not verify(replace(good, program="import os\nprint(5)"))


def test_the_same_seed_writes_the_same_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["--count", "40", "--seed", "3", "--out", str(first)]) == 0
    assert main(["--count", "40", "--seed", "3", "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]) == {
        "question", "program", "answer", "family", "distractor"
    }  # fmt: skip


def test_a_held_out_question_is_never_generated(tmp_path: Path) -> None:
    taken = next(generate(1, seed=5, held_out=NONE))
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(json.dumps({"id": "h001", "question": taken.question, "answer": 1}) + "\n")
    again = list(generate(1, seed=5, held_out=held_out))
    assert again[0].question != taken.question


def test_the_held_out_set_is_hand_written_apart_from_the_generator() -> None:
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines() if line.strip()]
    assert len(rows) >= 100
    assert [r["id"] for r in rows] == [f"h{i:03d}" for i in range(1, len(rows) + 1)]
    assert all(isinstance(r["answer"], int | float) for r in rows)
    assert len({r["question"] for r in rows}) == len(rows)
    # No generated problem is a near copy of a held-out one (word-set Jaccard).
    generated = [_words(p.question) for p in generate(1000, seed=0, held_out=NONE)]
    closest = max(
        len(h & g) / len(h | g) for h in (_words(r["question"]) for r in rows) for g in generated
    )
    assert closest < 0.8


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))
