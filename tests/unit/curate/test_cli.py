"""`python -m curate` end to end: every input id ends up kept or rejected with its stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curate.cli import parse_args
from curate.planted import planted_corpus

ARTICLE = (
    "The council said on Tuesday that the new bus routes would start in the spring, after "
    "a year of planning and two rounds of public meetings. Residents of the northern "
    "districts had asked for a direct service to the hospital, and the council agreed to "
    "add one. The cost will be met from the transport budget, and fares will not change."
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "curate", *args, "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_record_is_kept_or_rejected_with_its_stage(tmp_path: Path) -> None:
    corpus = planted_corpus(40, seed=5)
    lines = [json.dumps({"id": r.id, "text": r.text, "source": "planted"}) for r in corpus]
    lines += ["{not json", json.dumps({"id": corpus[0].id, "text": "again"}), '{"text": "x"}']
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"

    result = run_cli(str(source), "--out", str(out), "--report", str(report))

    assert result.returncode == 0, result.stderr
    kept = read_jsonl(out)
    rejects = read_jsonl(Path(f"{out}.rejects.jsonl"))
    summary = json.loads(report.read_text())
    assert len(kept) + len(rejects) == len(lines) == summary["records_in"]
    kept_ids = [r["id"] for r in kept]
    assert set(kept_ids) | {r["id"] for r in rejects} >= {r.id for r in corpus}
    assert len(set(kept_ids)) == len(kept_ids)
    assert all(r["source"] == "planted" for r in kept)  # other fields travel with a record
    labels = {r.id: r.label for r in corpus}
    for reject in rejects:
        assert reject["stage"] in summary["stages"] and reject["detail"], reject
        if reject["stage"] in ("exact_dedup", "near_dedup"):
            assert labels[reject["id"]] == reject["stage"]
    assert {r["stage"] for r in rejects} >= {"input", "exact_dedup", "near_dedup", "language"}
    assert sum(s["removed"] for s in summary["stages"].values()) == len(rejects)
    assert summary["stages"]["pii"]["edited"] >= 1 and summary["stages"]["pii"]["examples"]
    assert not any(
        "@" in r["text"] and "[EMAIL]" not in r["text"] for r in kept if "/pii" in r["id"]
    )


def test_a_folder_input_keys_records_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text(ARTICLE)
    (tmp_path / "docs" / "sub" / "b.txt").write_text(ARTICLE.upper())
    (tmp_path / "docs" / "c.bin").write_bytes(b"\xff\xfe\x00binary")
    out = tmp_path / "out.jsonl"

    result = run_cli(str(tmp_path / "docs"), "--out", str(out), "--quality", "min_words=20")

    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_jsonl(out)] == ["a.txt"]
    rejects = {r["id"]: r["stage"] for r in read_jsonl(Path(f"{out}.rejects.jsonl"))}
    assert rejects == {"c.bin": "input", "sub/b.txt": "exact_dedup"}
    assert json.loads(result.stdout)["kept"] == 1  # no --report: the report on stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--stages", "exact_dedup,bogus"],
        ["--lang", "xx"],
        ["--near-threshold", "1.5"],
        ["--quality", "min_words=lots"],
        ["--quality", "no_such_rule=3"],
    ],
)
def test_bad_options_are_refused_with_a_message(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": ARTICLE}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_args([str(source), "--out", str(tmp_path / "o.jsonl"), *args])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err
