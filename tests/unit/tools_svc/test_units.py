"""unit_convert: known conversions, case-sensitive symbols, clear refusals."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tools_svc.tools.units import UNITS, convert, find_unit


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (72, "degF", "degC", Fraction(200, 9)),  # 22.22...
        (100, "°C", "F", Fraction(212)),
        (0, "K", "celsius", Fraction("-273.15")),
        (491.67, "degR", "degF", Fraction("32")),
        (1, "mi", "km", Fraction("1.609344")),
        (12, "in", "ft", Fraction(1)),
        (1, "nautical mile", "m", Fraction(1852)),
        (1, "lb", "g", Fraction("453.59237")),
        (16, "oz", "lb", Fraction(1)),
        (1, "gal", "l", Fraction("3.785411784")),
        (1, "cup", "ml", Fraction("236.5882365")),
        (1, "m3", "L", Fraction(1000)),
        (1, "GiB", "MB", Fraction("1073.741824")),
        (1, "MB", "Mb", Fraction(8)),
        (8, "bit", "B", Fraction(1)),
        (1, "KiB", "B", Fraction(1024)),
        (1, "yr", "d", Fraction("365.25")),
        (90, "min", "h", Fraction("1.5")),
        (1, "week", "hours", Fraction(168)),
        (1500, "ms", "s", Fraction("1.5")),
        (1, "Kilometres", "metres", Fraction(1000)),
    ],
)
def test_known_conversions(value: float, source: str, target: str, expected: Fraction) -> None:
    result, *_ = convert(Fraction(repr(float(value))), source, target)
    assert result == expected


def test_symbols_are_case_sensitive_and_ambiguity_is_refused() -> None:
    assert find_unit("Mb") == ("data", "Mb")
    assert find_unit("MB") == ("data", "MB")
    with pytest.raises(ValueError, match="ambiguous"):
        find_unit("mb")


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        ("kg", "m", "cannot convert mass"),
        ("furlong", "m", "unknown unit 'furlong'"),
        ("s", "parsec", "unknown unit 'parsec'"),
    ],
)
def test_bad_units_say_why(source: str, target: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        convert(Fraction(1), source, target)


def test_below_absolute_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute zero"):
        convert(Fraction(-500), "degF", "K")


def test_every_name_denotes_one_unit() -> None:
    seen: dict[str, str] = {}
    for units in UNITS.values():
        for unit, (_, names) in units.items():
            for name in (unit, *names):
                assert name not in seen, f"{name!r} names both {seen[name]} and {unit}"
                seen[name] = unit
