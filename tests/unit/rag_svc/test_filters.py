"""Metadata filters: equality, membership, comparisons, negation, missing fields."""

from __future__ import annotations

from typing import Any

import pytest

from rag_svc.filters import FilterError, compile_filter

ROWS: list[dict[str, Any]] = [
    {"doc_id": "a", "lang": "en", "year": 1999, "tags": ["news", "uk"]},
    {"doc_id": "b", "lang": "de", "year": 2005, "tags": ["sport"]},
    {"doc_id": "c", "lang": "en", "year": 2020},
    {"doc_id": "d", "year": "unknown"},
]


def matching(spec: dict[str, Any]) -> list[str]:
    predicate = compile_filter(spec)
    assert predicate is not None
    return [row["doc_id"] for row in ROWS if predicate(row)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"lang": "en"}, ["a", "c"]),
        ({"lang": ["de", "fr"]}, ["b"]),
        ({"lang": {"$in": ["en"]}, "year": {"$gte": 2000}}, ["c"]),
        ({"year": {"$gt": 1999, "$lte": 2020}}, ["b", "c"]),
        ({"year": {"$lt": 2000}}, ["a"]),
        ({"lang": {"$ne": "en"}}, ["b", "d"]),
        ({"lang": {"$nin": ["en", "de"]}}, ["d"]),
        ({"tags": "uk"}, ["a"]),
        ({"tags": {"$in": ["sport", "uk"]}}, ["a", "b"]),
        ({"missing": 1}, []),
        ({"year": {"$eq": "unknown"}}, ["d"]),
    ],
)
def test_filters(spec: dict[str, Any], expected: list[str]) -> None:
    assert matching(spec) == expected


def test_no_filter_means_no_predicate() -> None:
    assert compile_filter(None) is None
    assert compile_filter({}) is None


@pytest.mark.parametrize("spec", [{"lang": {"$in": "en"}}, {"year": {"$gt": [1]}}])
def test_bad_operands_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(FilterError):
        compile_filter(spec)
