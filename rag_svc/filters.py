"""Metadata filters: `{field: value}`, `{field: [values]}`, `{field: {"$op": value}}`.

All conditions must hold. A missing field fails every condition but `$ne` and
`$nin`. Comparisons between values of different types are false, not errors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FilterError", "compile_filter"]

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()
_ORDERING = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


class FilterError(ValueError):
    """A filter that cannot be evaluated (a bad operand)."""


def _matches_eq(value: Any, expected: Any) -> bool:
    # A list-valued field (tags) matches when it contains the expected value.
    if isinstance(value, list) and not isinstance(expected, list):
        return expected in value
    return bool(value == expected)


def _condition(field: str, op: str, operand: Any) -> Predicate:
    if op == "$eq":
        return lambda m: _matches_eq(m.get(field, _MISSING), operand)
    if op == "$ne":
        return lambda m: not _matches_eq(m.get(field, _MISSING), operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f"{field!r}: {op} needs a list of values")

        def is_in(m: Mapping[str, Any]) -> bool:
            value = m.get(field, _MISSING)
            return value is not _MISSING and any(_matches_eq(value, o) for o in operand)

        return is_in if op == "$in" else (lambda m: not is_in(m))
    compare = _ORDERING[op]
    if isinstance(operand, bool) or not isinstance(operand, int | float | str):
        raise FilterError(f"{field!r}: {op} needs a number or a string")

    def ordered(m: Mapping[str, Any]) -> bool:
        value = m.get(field, _MISSING)
        if isinstance(value, bool) or not isinstance(value, type(operand) | int | float):
            return False
        if isinstance(operand, str) != isinstance(value, str):
            return False
        return bool(compare(value, operand))

    return ordered


def compile_filter(spec: Mapping[str, Any] | None) -> Predicate | None:
    """A predicate over a chunk's metadata, or None when there is nothing to filter."""
    if not spec:
        return None
    predicates: list[Predicate] = []
    for field, condition in spec.items():
        if isinstance(condition, dict):
            predicates.extend(_condition(field, op, operand) for op, operand in condition.items())
        elif isinstance(condition, list):
            predicates.append(_condition(field, "$in", condition))
        else:
            predicates.append(_condition(field, "$eq", condition))
    return lambda metadata: all(p(metadata) for p in predicates)
