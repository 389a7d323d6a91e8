"""Word problems with the programs that solve them: training data for program-aided reasoning.

    .venv/bin/python -m moe_svc.specialisation.pal_data --count 20000 --out var/pal/train.jsonl

Each problem comes from a family (a discount, a bill split with a tip, a recipe scaled,
a journey's time, fuel used, a rate of work, an average, a ratio shared, simple
interest, a unit conversion, an area, a multi-step purchase, a percentage change, a
bare sum typed as a question, a percentage of a number), in one of several phrasings,
with realistic numbers; about one in five carries a number the answer does not need
(a distractor: "Ana, who is 12, ...", "It is 31 degrees outside today."). Its
program is what PAL asks the model to write: named quantities, one `print`, in the
subset `PAL_GRAMMAR` accepts (reasoning_svc/strategies/pal.py). Every program is run
(`verify`, no builtins beyond round/abs/min/max) and must print the answer the family
computed on its own; a problem whose program does not is not emitted. The output is
deterministic for a seed: the same command writes the same file, a JSON line per
problem (`question`, `program`, `answer`, `family`, `distractor`).

The project's hand-written held-out problems (bench/data/arithmetic_heldout.jsonl)
were written apart from these families and are never generated: `generate` skips a
question that appears there word for word.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

__all__ = ["FAMILIES", "Problem", "generate", "verify"]

_NAMES = (
    "Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Yuki",
)  # fmt: skip
_GOODS = (
    ("notebook", "notebooks"), ("lamp", "lamps"), ("jacket", "jackets"), ("mug", "mugs"),
    ("chair", "chairs"), ("backpack", "backpacks"), ("kettle", "kettles"), ("towel", "towels"),
    ("scarf", "scarves"), ("candle", "candles"), ("plant pot", "plant pots"), ("cable", "cables"),
)  # fmt: skip
_CITIES = ("Lyon", "Porto", "Leeds", "Graz", "Turku", "Malaga", "Utrecht", "Bergen", "Brno")


@dataclass(frozen=True)
class Problem:
    question: str
    program: str
    answer: float
    family: str
    distractor: bool = False


def _money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _fmt(x: float) -> str:
    """A number as a person writes it: 12, 12.5, 12.75."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _distractor(rng: random.Random, name: str) -> str:
    return rng.choice(
        (
            f"{name}, who is {rng.randint(9, 71)} years old, ",
            f"{name}, who lives {rng.randint(2, 40)} km from the centre, ",
            f"{name}, who has {rng.randint(2, 9)} cousins, ",
        )
    )


def _discount(rng: random.Random) -> Problem:
    name, (one, _) = rng.choice(_NAMES), rng.choice(_GOODS)
    price = _money(rng, 12, 480)
    off = rng.choice((5, 10, 15, 20, 25, 30, 35, 40, 50))
    answer = round(price * (100 - off) / 100, 2)
    who = _distractor(rng, name) if (extra := rng.random() < 0.25) else f"{name} "
    question = rng.choice(
        (
            f"A {one} costs ${_fmt(price)}. It is on sale at {off}% off. What is the sale price, "
            "in dollars, to the cent?",
            f"{who}buys a {one} marked ${_fmt(price)} with a {off}% discount. How much does "
            f"{name} pay, to the cent?",
            f"What do I pay for a ${_fmt(price)} {one} after a {off}% discount? Give dollars to "
            "the cent.",
        )
    )
    program = (
        f"price = {_fmt(price)}\ndiscount = {off}\nprint(round(price * (100 - discount) / 100, 2))"
    )
    return Problem(question, program, answer, "discount", extra and who in question)


def _bill_split(rng: random.Random) -> Problem:
    bill = _money(rng, 40, 620)
    tip = rng.choice((10, 12, 15, 18, 20))
    people = rng.randint(2, 9)
    answer = round(bill * (100 + tip) / 100 / people, 2)
    question = rng.choice(
        (
            f"A dinner bill is ${_fmt(bill)}. We add a {tip}% tip and split it equally between "
            f"{people} people. How much does each person pay, to the cent?",
            f"{people} friends share a restaurant bill of ${_fmt(bill)} plus a {tip}% tip "
            "equally. What is each share in dollars, rounded to the cent?",
            f"Split ${_fmt(bill)} with a {tip}% tip on top among {people} people. How much "
            "each, to the cent?",
        )
    )
    program = (
        f"bill = {_fmt(bill)}\ntip = {tip}\npeople = {people}\n"
        "print(round(bill * (100 + tip) / 100 / people, 2))"
    )
    return Problem(question, program, answer, "bill split")


def _recipe(rng: random.Random) -> Problem:
    serves, wanted = rng.choice(((4, 6), (4, 10), (6, 9), (2, 5), (8, 12), (4, 3), (6, 15)))
    amount = rng.choice((150, 200, 250, 300, 350, 400, 450, 500, 600, 750))
    ingredient = rng.choice(("flour", "rice", "sugar", "butter", "lentils", "pasta", "oats"))
    answer = round(amount * wanted / serves, 1)
    question = rng.choice(
        (
            f"A recipe for {serves} people uses {amount} g of {ingredient}. How many grams do I "
            f"need for {wanted} people? Round to one decimal place.",
            f"To cook for {wanted} guests from a recipe that serves {serves} with {amount} g of "
            f"{ingredient}, how much {ingredient} is needed, in grams to one decimal?",
        )
    )
    program = (
        f"grams = {amount}\nserves = {serves}\nwanted = {wanted}\n"
        "print(round(grams * wanted / serves, 1))"
    )
    return Problem(question, program, answer, "recipe")


def _journey(rng: random.Random) -> Problem:
    name = rng.choice(_NAMES)
    km = rng.choice((45, 60, 84, 96, 120, 150, 180, 210, 252, 300, 340))
    speed = rng.choice((40, 48, 60, 72, 80, 90, 100, 120))
    answer = round(km / speed * 60, 1)
    extra = rng.random() < 0.25
    who = _distractor(rng, name) if extra else f"{name} "
    question = rng.choice(
        (
            f"{who}drives {km} km at an average of {speed} km/h. How many minutes does the "
            "drive take, to one decimal place?",
            f"A train covers {km} km at {speed} km/h. How long is the trip in minutes, "
            "rounded to one decimal?",
            f"How many minutes does it take to travel {km} km at {speed} km/h? Round to one "
            "decimal place.",
        )
    )
    program = f"distance = {km}\nspeed = {speed}\nprint(round(distance / speed * 60, 1))"
    return Problem(question, program, answer, "journey", extra and who in question)


def _fuel(rng: random.Random) -> Problem:
    km = rng.choice((120, 250, 340, 415, 560, 730, 880))
    per100 = rng.choice((4.5, 5.2, 6.0, 6.8, 7.4, 8.1, 9.5))
    price = rng.choice((1.59, 1.72, 1.85, 1.94, 2.05))
    answer = round(km * per100 / 100 * price, 2)
    city = rng.choice(_CITIES)
    question = rng.choice(
        (
            f"My car uses {_fmt(per100)} litres per 100 km and fuel costs ${_fmt(price)} a "
            f"litre. What does a {km} km trip to {city} cost in fuel, to the cent?",
            f"A van burns {_fmt(per100)} L/100 km. Fuel is ${_fmt(price)} per litre. How much "
            f"is the fuel for {km} km, in dollars to the cent?",
        )
    )
    program = (
        f"distance = {km}\nper_100 = {_fmt(per100)}\nprice = {_fmt(price)}\n"
        "print(round(distance * per_100 / 100 * price, 2))"
    )
    return Problem(question, program, answer, "fuel")


def _work_rate(rng: random.Random) -> Problem:
    name = rng.choice(_NAMES)
    per_hour = rng.choice((12, 15, 18, 24, 30, 35, 42))
    total = per_hour * rng.randint(3, 20) + rng.choice((0, per_hour // 2))
    answer = round(total / per_hour, 2)
    thing = rng.choice(("pages", "forms", "boxes", "emails", "parcels"))
    question = rng.choice(
        (
            f"{name} handles {per_hour} {thing} an hour. How many hours for {total} {thing}? "
            "Round to two decimal places.",
            f"At {per_hour} {thing} per hour, how long in hours does it take to finish "
            f"{total} {thing}, to two decimals?",
        )
    )
    program = f"total = {total}\nper_hour = {per_hour}\nprint(round(total / per_hour, 2))"
    return Problem(question, program, answer, "work rate")


def _average(rng: random.Random) -> Problem:
    values = [rng.randint(40, 100) for _ in range(rng.randint(3, 6))]
    answer = round(sum(values) / len(values), 2)
    listed = ", ".join(str(v) for v in values[:-1]) + f" and {values[-1]}"
    question = rng.choice(
        (
            f"My test scores are {listed}. What is my average score, to two decimal places?",
            f"What is the mean of {listed}? Round to two decimals.",
        )
    )
    terms = " + ".join(str(v) for v in values)
    program = f"total = {terms}\ncount = {len(values)}\nprint(round(total / count, 2))"
    return Problem(question, program, answer, "average")


def _ratio(rng: random.Random) -> Problem:
    a, b = rng.choice(((2, 3), (3, 5), (1, 4), (4, 5), (5, 7), (3, 4)))
    total = (a + b) * rng.randint(20, 400)
    first, second = rng.sample(_NAMES, 2)
    answer = float(total * a // (a + b))
    question = rng.choice(
        (
            f"{first} and {second} share ${total} in the ratio {a}:{b}. How much does {first} get?",
            f"Split {total} in the ratio {a} to {b}. How big is the first part?",
        )
    )
    program = (
        f"total = {total}\nfirst = {a}\nsecond = {b}\nprint(total * first // (first + second))"
    )
    return Problem(question, program, answer, "ratio")


def _interest(rng: random.Random) -> Problem:
    principal = rng.choice((500, 1200, 2500, 4000, 7500, 10000, 15000))
    rate = rng.choice((1.5, 2, 2.5, 3, 3.75, 4, 5))
    years = rng.randint(2, 9)
    answer = round(principal * rate / 100 * years, 2)
    question = rng.choice(
        (
            f"How much simple interest does ${principal} earn at {_fmt(rate)}% a year over "
            f"{years} years, to the cent?",
            f"I deposit ${principal} at {_fmt(rate)}% simple interest per year. What interest "
            f"have I earned after {years} years, in dollars to the cent?",
        )
    )
    program = (
        f"principal = {principal}\nrate = {_fmt(rate)}\nyears = {years}\n"
        "print(round(principal * rate / 100 * years, 2))"
    )
    return Problem(question, program, answer, "interest")


def _units(rng: random.Random) -> Problem:
    kind = rng.choice(("km", "kg", "hours", "litres"))
    factor: float
    if kind == "km":
        value = round(rng.uniform(0.4, 42.2), 1)
        answer, factor = round(value * 1000, 1), 1000
        question = f"How many metres are {_fmt(value)} km?"
    elif kind == "kg":
        value = round(rng.uniform(0.2, 25), 2)
        answer, factor = round(value * 1000, 1), 1000
        question = f"Convert {_fmt(value)} kg to grams."
    elif kind == "hours":
        value = rng.choice((1.25, 1.5, 2.75, 3.2, 4.6, 0.35, 7.5))
        answer, factor = round(value * 60, 1), 60
        question = f"How many minutes are in {_fmt(value)} hours?"
    else:
        value = float(rng.randint(250, 9800))
        answer, factor = round(value / 1000, 3), 0.001
        question = f"A jug holds {_fmt(value)} ml. How many litres is that?"
    program = f"value = {_fmt(value)}\nprint(round(value * {_fmt(factor)}, 3))"
    return Problem(question, program, answer, "units")


def _area(rng: random.Random) -> Problem:
    length = round(rng.uniform(2.5, 9.5), 1)
    width = round(rng.uniform(2.0, 6.0), 1)
    price = rng.choice((12, 18, 24.5, 31, 45))
    answer = round(length * width * price, 2)
    question = rng.choice(
        (
            f"A room is {_fmt(length)} m by {_fmt(width)} m. Flooring costs ${_fmt(price)} per "
            "square metre. What does flooring the room cost, to the cent?",
            f"How much is carpet at ${_fmt(price)}/m² for a {_fmt(length)} m × {_fmt(width)} m "
            "floor? Give dollars to the cent.",
        )
    )
    program = (
        f"length = {_fmt(length)}\nwidth = {_fmt(width)}\nprice = {_fmt(price)}\n"
        "print(round(length * width * price, 2))"
    )
    return Problem(question, program, answer, "area")


def _purchase(rng: random.Random) -> Problem:
    name = rng.choice(_NAMES)
    (_, many), (one2, many2) = rng.sample(_GOODS, 2)
    n1, n2 = rng.randint(2, 6), rng.randint(1, 4)
    p1, p2 = _money(rng, 2, 40), _money(rng, 5, 90)
    spent = n1 * p1 + n2 * p2
    note = next(x for x in (20, 50, 100, 200, 500, 1000) if x > spent)
    answer = round(note - spent, 2)
    extra = rng.random() < 0.3
    who = _distractor(rng, name) if extra else f"{name} "
    question = (
        f"{who}buys {n1} {many} at ${_fmt(p1)} each and {n2} {many2 if n2 > 1 else one2} at "
        f"${_fmt(p2)} each, and pays with a ${note} note. How much change does {name} get, "
        "to the cent?"
    )
    program = (
        f"first = {n1} * {_fmt(p1)}\nsecond = {n2} * {_fmt(p2)}\npaid = {note}\n"
        "print(round(paid - first - second, 2))"
    )
    return Problem(question, program, answer, "purchase", extra)


def _change(rng: random.Random) -> Problem:
    old = rng.choice((120, 250, 480, 800, 1250, 3400, 56000))
    new = round(old * rng.uniform(0.6, 1.6))
    answer = round((new - old) / old * 100, 1)
    what = rng.choice(("rent", "the price", "the town's population", "monthly sales"))
    question = rng.choice(
        (
            f"{what[0].upper() + what[1:]} went from {old} to {new}. What is the percentage "
            "change, to one decimal place? (Negative for a fall.)",
            f"By what percent did {what} change from {old} to {new}? Round to one decimal, "
            "negative if it fell.",
        )
    )
    program = f"old = {old}\nnew = {new}\nprint(round((new - old) / old * 100, 1))"
    return Problem(question, program, answer, "percent change")


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
}


def _arithmetic(rng: random.Random) -> Problem:
    """A bare sum, as people type it: the program is the expression itself."""
    a, b, c = rng.randint(2, 999), rng.randint(2, 99), rng.randint(2, 999)
    o1, o2 = rng.choice("+-*"), rng.choice("+-*")
    shape = rng.choice(("two", "three", "grouped", "divide"))
    if shape == "two":
        expr, answer = f"{a} {o1} {b}", _OPS[o1](a, b)
    elif shape == "grouped":
        expr, answer = f"({a} {o1} {b}) {o2} {c}", _OPS[o2](_OPS[o1](a, b), c)
    elif shape == "three":
        expr = f"{a} {o1} {b} {o2} {c}"
        # * binds before + and -
        first_last = o2 == "*" and o1 != "*"
        answer = _OPS[o1](a, b * c) if first_last else _OPS[o2](_OPS[o1](a, b), c)
    else:
        expr, answer = f"{a * b} / {b}", a
    question = rng.choice(
        (
            f"What is {expr}?",
            f"Compute {expr}.",
            f"Calculate {expr}.",
            f"What does {expr} come to?",
            f"{expr} = ?",
            f"Work out {expr}.",
        )
    )
    return Problem(question, f"print({expr})", answer, "arithmetic")


def _percent_of(rng: random.Random) -> Problem:
    percent = rng.choice((5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75, 80))
    whole = rng.choice((40, 60, 80, 120, 150, 200, 250, 320, 360, 480, 600, 750, 1200))
    question = rng.choice(
        (
            # (not "What is P% of W?": the held-out set asks that way)
            f"Find {percent} percent of {whole}.",
            f"How much is {percent}% of {whole}?",
        )
    )
    program = f"print({whole} * {percent} / 100)"
    return Problem(question, program, whole * percent / 100, "percent of")


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "discount": _discount,
    "bill split": _bill_split,
    "recipe": _recipe,
    "journey": _journey,
    "fuel": _fuel,
    "work rate": _work_rate,
    "average": _average,
    "ratio": _ratio,
    "interest": _interest,
    "units": _units,
    "area": _area,
    "purchase": _purchase,
    "percent change": _change,
    "arithmetic": _arithmetic,
    "percent of": _percent_of,
}

# An opening sentence with a number the answer does not need.
_ASIDES = (
    "It is {n} degrees outside today. ",
    "The shop opened {n} years ago. ",
    "There are {n} people in the queue. ",
    "My phone battery is at {n}%. ",
)
DISTRACTOR_SHARE = 0.2

_SAFE_BUILTINS = {"round": round, "abs": abs, "min": min, "max": max, "sum": sum, "range": range}


def verify(problem: Problem) -> bool:
    """Whether the program, run with only arithmetic at hand, prints the problem's answer."""
    out = io.StringIO()
    namespace = {"__builtins__": {**_SAFE_BUILTINS, "print": print}, "math": math}
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(problem.program, "<pal>", "exec"), namespace)  # our own programs, verified
    except Exception:  # any failure: the program is wrong
        return False
    printed = out.getvalue().strip().splitlines()
    if not printed:
        return False
    try:
        return math.isclose(float(printed[-1]), problem.answer, rel_tol=0, abs_tol=1e-6)
    except ValueError:
        return False


HELD_OUT = Path(__file__).resolve().parents[2] / "bench" / "data" / "arithmetic_heldout.jsonl"


def held_out_questions(path: Path = HELD_OUT) -> set[str]:
    """The hand-written evaluation questions (none where the file is absent)."""
    if not path.exists():
        return set()
    return {json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()}


def generate(
    count: int, seed: int = 0, *, held_out: Path = HELD_OUT, progress: bool = False
) -> Iterator[Problem]:
    """`count` verified problems, families in turn, no question twice or from the held-out set."""
    rng = random.Random(seed)
    families = list(FAMILIES.values())
    seen = held_out_questions(held_out)
    made = 0
    with tqdm(total=count, disable=not progress, unit="problem") as bar:
        while made < count:
            problem = families[made % len(families)](rng)
            if not problem.distractor and rng.random() < DISTRACTOR_SHARE:
                aside = rng.choice(_ASIDES).format(n=rng.randint(3, 95))
                problem = replace(problem, question=aside + problem.question, distractor=True)
            if problem.question in seen or not verify(problem):
                continue
            seen.add(problem.question)
            made += 1
            bar.update()
            yield problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines to write")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for problem in generate(args.count, args.seed, progress=True):
            handle.write(json.dumps(asdict(problem)) + "\n")
    print(f"{args.count} verified problems written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
