"""`unit_convert`: length, mass, temperature, volume, data sizes and time.

Factors are exact `Fraction`s of each dimension's base unit, taken from
their definitions (an inch is 0.0254 m, a pound 0.45359237 kg, a US gallon
231 cubic inches), so a conversion is exact until it is printed.
Temperatures are affine: they go through kelvin. Symbols are matched
case-sensitively first (`Mb` is a megabit, `MB` a megabyte); names are also
matched in any case (`Kilometres`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pydantic import Field

from common.errors import BadRequest
from tools_svc.registry import Tool, ToolArguments, ToolResult
from tools_svc.tools.calculator import format_number

__all__ = ["UnitConvertTool", "convert", "find_unit"]

F = Fraction
INCH = F("0.0254")
POUND = F("0.45359237")
US_GALLON = 231 * INCH**3 * 1000  # litres
DAY = F(86_400)

# dimension -> unit -> (factor to the base unit, names and symbols)
UNITS: dict[str, dict[str, tuple[Fraction, tuple[str, ...]]]] = {
    "length": {
        "m": (F(1), ("meter", "metre", "meters", "metres")),
        "km": (F(1000), ("kilometer", "kilometre", "kilometers", "kilometres")),
        "cm": (F(1, 100), ("centimeter", "centimetre", "centimeters", "centimetres")),
        "mm": (F(1, 1000), ("millimeter", "millimetre", "millimeters", "millimetres")),
        "um": (F(1, 10**6), ("µm", "micrometer", "micrometre", "micron", "microns")),
        "nm": (F(1, 10**9), ("nanometer", "nanometre", "nanometers", "nanometres")),
        "in": (INCH, ("inch", "inches", '"')),
        "ft": (12 * INCH, ("foot", "feet", "'")),
        "yd": (36 * INCH, ("yard", "yards")),
        "mi": (63_360 * INCH, ("mile", "miles")),
        "nmi": (F(1852), ("nautical mile", "nautical miles")),
        "au": (F(149_597_870_700), ("astronomical unit", "astronomical units")),
        "ly": (F(9_460_730_472_580_800), ("light year", "light-year", "light years")),
    },
    "mass": {
        "kg": (F(1), ("kilogram", "kilograms", "kilo", "kilos")),
        "g": (F(1, 1000), ("gram", "grams")),
        "mg": (F(1, 10**6), ("milligram", "milligrams")),
        "ug": (F(1, 10**9), ("µg", "microgram", "micrograms")),
        "t": (F(1000), ("tonne", "tonnes", "metric ton", "metric tons")),
        "lb": (POUND, ("lbs", "pound", "pounds")),
        "oz": (POUND / 16, ("ounce", "ounces")),
        "st": (14 * POUND, ("stone", "stones")),
        "short ton": (2000 * POUND, ("us ton", "short tons")),
        "long ton": (2240 * POUND, ("imperial ton", "long tons")),
    },
    "volume": {
        "l": (F(1), ("L", "liter", "litre", "liters", "litres")),
        "ml": (F(1, 1000), ("mL", "milliliter", "millilitre", "milliliters", "millilitres")),
        "cl": (F(1, 100), ("cL", "centiliter", "centilitre")),
        "dl": (F(1, 10), ("dL", "deciliter", "decilitre")),
        "m3": (F(1000), ("m³", "cubic meter", "cubic metre", "cubic meters", "cubic metres")),
        "cm3": (F(1, 1000), ("cm³", "cc", "cubic centimeter", "cubic centimetre")),
        "gal": (US_GALLON, ("gallon", "gallons", "us gallon", "us gallons")),
        "qt": (US_GALLON / 4, ("quart", "quarts")),
        "pt": (US_GALLON / 8, ("pint", "pints", "us pint")),
        "cup": (US_GALLON / 16, ("cups", "us cup")),
        "fl oz": (US_GALLON / 128, ("fluid ounce", "fluid ounces", "us fl oz")),
        "tbsp": (US_GALLON / 256, ("tablespoon", "tablespoons")),
        "tsp": (US_GALLON / 768, ("teaspoon", "teaspoons")),
        "imp gal": (F("4.54609"), ("imperial gallon", "imperial gallons", "uk gallon")),
        "imp pt": (F("4.54609") / 8, ("imperial pint", "imperial pints", "uk pint")),
        "in3": (INCH**3 * 1000, ("in³", "cubic inch", "cubic inches")),
        "ft3": ((12 * INCH) ** 3 * 1000, ("ft³", "cubic foot", "cubic feet")),
    },
    "data": {
        "bit": (F(1, 8), ("b", "bits")),
        "B": (F(1), ("byte", "bytes")),
        **{
            f"{p}B": (F(1000**i), (f"{name}byte", f"{name}bytes"))
            for i, (p, name) in enumerate(
                [("k", "kilo"), ("M", "mega"), ("G", "giga"), ("T", "tera"), ("P", "peta")], 1
            )
        },
        **{
            f"{p}iB": (F(1024**i), (f"{name}byte", f"{name}bytes"))
            for i, (p, name) in enumerate(
                [("K", "kibi"), ("M", "mebi"), ("G", "gibi"), ("T", "tebi"), ("P", "pebi")], 1
            )
        },
        **{
            f"{p}b": (F(1000**i, 8), (f"{name}bit", f"{name}bits", f"{p}bit"))
            for i, (p, name) in enumerate(
                [("k", "kilo"), ("M", "mega"), ("G", "giga"), ("T", "tera")], 1
            )
        },
    },
    "time": {
        "s": (F(1), ("sec", "secs", "second", "seconds")),
        "ms": (F(1, 1000), ("millisecond", "milliseconds")),
        "us": (F(1, 10**6), ("µs", "microsecond", "microseconds")),
        "ns": (F(1, 10**9), ("nanosecond", "nanoseconds")),
        "min": (F(60), ("mins", "minute", "minutes")),
        "h": (F(3600), ("hr", "hrs", "hour", "hours")),
        "d": (DAY, ("day", "days")),
        "wk": (7 * DAY, ("week", "weeks")),
        # The Julian year (IAU): 365.25 days; a month is a twelfth of it.
        "yr": (DAY * F("365.25"), ("year", "years", "y")),
        "mo": (DAY * F("365.25") / 12, ("month", "months")),
    },
    "temperature": {
        "K": (F(1), ("kelvin", "kelvins")),
        "degC": (F(1), ("°C", "C", "celsius", "centigrade")),
        "degF": (F(5, 9), ("°F", "F", "fahrenheit")),
        "degR": (F(5, 9), ("°R", "R", "rankine")),
    },
}
# Temperature offsets: kelvin = (value + offset) * factor.
OFFSETS = {"K": F(0), "degC": F("273.15"), "degF": F("459.67"), "degR": F(0)}


def _index() -> tuple[dict[str, tuple[str, str]], dict[str, set[tuple[str, str]]]]:
    exact: dict[str, tuple[str, str]] = {}
    folded: dict[str, set[tuple[str, str]]] = {}
    for dimension, units in UNITS.items():
        for unit, (_, names) in units.items():
            for name in (unit, *names):
                exact[name] = (dimension, unit)
                folded.setdefault(name.lower(), set()).add((dimension, unit))
    return exact, folded


_EXACT, _FOLDED = _index()


def find_unit(text: str) -> tuple[str, str]:
    """(dimension, unit) that `text` names; ValueError when none or ambiguous."""
    name = " ".join(text.strip().split())
    if name in _EXACT:
        return _EXACT[name]
    matches = _FOLDED.get(name.lower(), set())
    if len(matches) == 1:
        return next(iter(matches))
    if matches:
        options = ", ".join(sorted(unit for _, unit in matches))
        raise ValueError(f"{text!r} is ambiguous (one of {options}); case matters for it")
    raise ValueError(f"unknown unit {text!r}")


def convert(value: Fraction, source: str, target: str) -> tuple[Fraction, str, str, str]:
    """Convert; returns (result, dimension, source unit, target unit)."""
    dim_from, unit_from = find_unit(source)
    dim_to, unit_to = find_unit(target)
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {dim_from} ({unit_from}) to {dim_to} ({unit_to})")
    factor_from, factor_to = UNITS[dim_from][unit_from][0], UNITS[dim_to][unit_to][0]
    if dim_from == "temperature":
        kelvin = (value + OFFSETS[unit_from]) * factor_from
        if kelvin < 0:
            raise ValueError("the temperature is below absolute zero")
        return kelvin / factor_to - OFFSETS[unit_to], dim_from, unit_from, unit_to
    return value * factor_from / factor_to, dim_from, unit_from, unit_to


class UnitArguments(ToolArguments):
    value: float = Field(description="The quantity to convert.", allow_inf_nan=False)
    from_unit: str = Field(min_length=1, max_length=40, description="e.g. 'km', 'degF', 'GiB'.")
    to_unit: str = Field(min_length=1, max_length=40, description="Same dimension as from_unit.")


class UnitConvertTool(Tool):
    name = "unit_convert"
    description = (
        "Convert a value between units of length (m, km, in, ft, mi, ...), mass (kg, g, lb, "
        "oz, ...), temperature (degC, degF, K, degR), volume (l, ml, gal, cup, m3, ...), data "
        "sizes (bit, B, kB, MB, GiB, Mb, ...) and time (s, ms, min, h, d, wk, mo, yr)."
    )
    arguments = UnitArguments

    async def run(self, arguments: Any) -> ToolResult:
        args: UnitArguments = arguments
        # The decimal the caller wrote (72.1), not its binary float approximation.
        value = Fraction(repr(args.value))
        for param, text in (("from_unit", args.from_unit), ("to_unit", args.to_unit)):
            try:
                find_unit(text)
            except ValueError as exc:
                raise BadRequest(
                    f"{exc}.", param=f"arguments.{param}", code="unknown_unit"
                ) from None
        try:
            result, dimension, unit_from, unit_to = convert(value, args.from_unit, args.to_unit)
        except ValueError as exc:
            raise BadRequest(
                f"{exc}.", param="arguments.to_unit", code="incompatible_units"
            ) from None
        text, exact = format_number(result)
        return ToolResult(
            {
                "value": args.value,
                "from_unit": unit_from,
                "to_unit": unit_to,
                "dimension": dimension,
                "result": float(result),
                "result_text": text,
                "exact": exact,
            }
        )
