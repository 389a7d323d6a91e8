"""Generated mathematics text: arithmetic and word problems with worked, exact solutions."""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

__all__ = ["math_documents"]

_NAMES = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas")
_ITEMS = ("apples", "books", "marbles", "pencils", "stickers", "coins", "cards", "shells")


def _arithmetic(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 99)
    op = rng.choice("+-*")
    first = {"+": a + b, "-": a - b, "*": a * b}[op]
    return (
        f"Compute ({a} {op} {b}) * {c}.\n"
        f"Solution: first {a} {op} {b} = {first}. Then {first} * {c} = {first * c}.\n"
        f"Answer: {first * c}"
    )


def _fractions(rng: random.Random) -> str:
    p = Fraction(rng.randint(1, 9), rng.randint(2, 12))
    q = Fraction(rng.randint(1, 9), rng.randint(2, 12))
    total = p + q
    return (
        f"What is {p} + {q}?\n"
        f"Solution: a common denominator is {p.denominator * q.denominator}, "
        f"so {p} + {q} = {p.numerator * q.denominator}/{p.denominator * q.denominator} + "
        f"{q.numerator * p.denominator}/{p.denominator * q.denominator} = {total}.\n"
        f"Answer: {total}"
    )


def _linear(rng: random.Random) -> str:
    x, a, b = rng.randint(-20, 20), rng.randint(2, 12), rng.randint(-50, 50)
    c = a * x + b
    return (
        f"Solve for x: {a}x + {b} = {c}.\n"
        f"Solution: subtract {b} from both sides: {a}x = {c - b}. "
        f"Divide by {a}: x = {x}.\n"
        f"Answer: x = {x}"
    )


def _word_share(rng: random.Random) -> str:
    name, other = rng.sample(_NAMES, 2)
    item = rng.choice(_ITEMS)
    have, give, buy = rng.randint(20, 90), rng.randint(1, 19), rng.randint(2, 9)
    left = have - give
    return (
        f"{name} has {have} {item}. {name} gives {give} to {other} and then buys {buy} packs "
        f"of 6 {item}. How many {item} does {name} have now?\n"
        f"Solution: after giving, {have} - {give} = {left}. The packs hold {buy} * 6 = "
        f"{buy * 6}. Total: {left} + {buy * 6} = {left + buy * 6}.\n"
        f"Answer: {left + buy * 6}"
    )


def _word_speed(rng: random.Random) -> str:
    speed, hours, extra = rng.randint(30, 120), rng.randint(2, 9), rng.randint(10, 90)
    return (
        f"A train travels at {speed} km/h for {hours} hours and then {extra} km more. "
        f"How far does it travel in total?\n"
        f"Solution: distance = speed * time = {speed} * {hours} = {speed * hours} km. "
        f"Adding {extra} km gives {speed * hours + extra} km.\n"
        f"Answer: {speed * hours + extra} km"
    )


def _heads_legs(rng: random.Random) -> str:
    chickens, cows = rng.randint(3, 40), rng.randint(3, 40)
    heads, legs = chickens + cows, 2 * chickens + 4 * cows
    return (
        f"A farm has chickens and cows: {heads} heads and {legs} legs. How many cows?\n"
        f"Solution: if all were chickens there would be {2 * heads} legs. Each cow adds 2 "
        f"legs, so cows = ({legs} - {2 * heads}) / 2 = {cows}, chickens = {heads} - {cows} = "
        f"{chickens}.\n"
        f"Answer: {cows} cows"
    )


def _percent(rng: random.Random) -> str:
    price, pct = rng.randint(2, 60) * 5, rng.choice((10, 15, 20, 25, 30, 40, 50))
    off = Fraction(price * pct, 100)
    return (
        f"A jacket costs {price} euros and is reduced by {pct}%. What is the new price?\n"
        f"Solution: {pct}% of {price} is {price} * {pct} / 100 = {float(off):g}. "
        f"New price: {price} - {float(off):g} = {float(price - off):g}.\n"
        f"Answer: {float(price - off):g} euros"
    )


def _logic(rng: random.Random) -> str:
    a, b, c = rng.sample(_NAMES, 3)
    return (
        f"{a} is taller than {b}, and {b} is taller than {c}. Who is the shortest?\n"
        f"Solution: the order from tallest is {a}, {b}, {c}; taller-than is transitive, so "
        f"{c} is shorter than both.\n"
        f"Answer: {c}"
    )


_GENERATORS: tuple[Callable[[random.Random], str], ...] = (
    _arithmetic,
    _fractions,
    _linear,
    _word_share,
    _word_speed,
    _heads_legs,
    _percent,
    _logic,
)


def math_documents(count: int, seed: int = 0) -> list[str]:
    """`count` problems with solutions, in a fixed order for a given seed."""
    rng = random.Random(seed)
    return [_GENERATORS[i % len(_GENERATORS)](rng) for i in range(count)]
