"""The specialisation corpora go through curate's stages: copies out, personal data redacted."""

from __future__ import annotations

import pytest

from moe_svc.specialisation.corpora import _bbc, curate_source, domain_sources, site_packages

PII_LINE = "For tickets call +44 20 7946 0018 or write to box.office@example.com today."


@pytest.fixture(scope="module")
def sport() -> list[str]:
    return _bbc(site_packages(), "sports")[:12]


def test_a_planted_copy_is_removed_and_personal_data_redacted(sport: list[str]) -> None:
    near_copy = sport[4].replace(" the ", " a ", 1)
    with_pii = f"{sport[7]}\n\n{PII_LINE}"
    planted = [*sport[:7], with_pii, *sport[8:], sport[2], near_copy]

    kept, counts = curate_source("general", "bbc news", planted)

    assert len(kept) == len(sport)
    assert kept.count(sport[2]) == 1 and near_copy not in kept
    assert counts["documents_in"] == len(sport) + 2 and counts["kept"] == len(sport)
    assert counts["stages"]["exact_dedup"]["removed"] == 1
    assert counts["stages"]["near_dedup"]["removed"] == 1
    assert counts["stages"]["pii"]["edited"] == 1
    redacted = kept[7]
    assert "box.office@example.com" not in redacted and "7946 0018" not in redacted
    assert "[EMAIL]" in redacted and "[PHONE]" in redacted
    assert redacted.startswith(sport[7])


def test_code_is_not_judged_by_the_prose_rules() -> None:
    code = ["def add(a, b):\n    return a + b\n", "x = [i * i for i in range(10)]\n"]
    kept, counts = curate_source("code", "python stdlib", [*code, code[0]])
    assert kept == code
    assert set(counts["stages"]) == {"exact_dedup", "near_dedup", "pii"}


def test_the_general_domain_reads_the_sports_articles() -> None:
    root = site_packages()
    sports = _bbc(root, "sports")
    assert len(sports) > 400
    assert sports[0] in domain_sources(root)["general"]["bbc news"]
    with pytest.raises(FileNotFoundError, match="sports"):
        _bbc(root, "sport")
