"""Which tool requests the router serves with one direct call, and how it words the result."""

from __future__ import annotations

import pytest

from router_svc.direct_tools import DirectCall, detect_direct_call, format_tool_answer


@pytest.mark.parametrize(
    ("text", "call"),
    [
        (
            "Run this code: print(sum(range(100)))",
            DirectCall("python", {"code": "print(sum(range(100)))"}),
        ),
        ("run print(2**10)", DirectCall("python", {"code": "print(2**10)"})),
        (
            "Please execute:\n```python\nimport math\nprint(math.pi)\n```",
            DirectCall("python", {"code": "import math\nprint(math.pi)"}),
        ),
        ("What time is it?", DirectCall("datetime_now", {"timezone": "UTC"})),
        ("what's the date today", DirectCall("datetime_now", {"timezone": "UTC"})),
        ("Calculate 17 * 23 + 456.", DirectCall("calculator", {"expression": "17 * 23 + 456"})),
        ("What is 2^64?", DirectCall("calculator", {"expression": "2^64"})),
        ("1,234 / 56 =", DirectCall("calculator", {"expression": "1234 / 56"})),
        (
            "Convert 72 F to C",
            DirectCall("unit_convert", {"value": 72.0, "from_unit": "F", "to_unit": "C"}),
        ),
        (
            "convert 5 gallons into liters please",
            DirectCall("unit_convert", {"value": 5.0, "from_unit": "gallons", "to_unit": "liters"}),
        ),
        (
            "Convert 30 degrees Celsius to Fahrenheit.",
            DirectCall(
                "unit_convert", {"value": 30.0, "from_unit": "Celsius", "to_unit": "Fahrenheit"}
            ),
        ),
    ],
)
def test_named_calls_are_detected(text: str, call: DirectCall) -> None:
    assert detect_direct_call(text) == call


@pytest.mark.parametrize(
    "text",
    [
        "What time is it in Tokyo?",
        "Run a simulation of 10,000 dice rolls and report the average.",
        "Calculate the compound interest on $10,000 at 5% for 10 years",
        "Search the index for documents about the telephone",
        "What is 15% of 2,340 in euros after tax?",
        "What is the capital of France?",
    ],
)
def test_requests_that_need_more_than_one_call_go_to_the_agent(text: str) -> None:
    assert detect_direct_call(text) is None


def test_results_are_worded_for_a_reader() -> None:
    python = DirectCall("python", {"code": "x"})
    assert format_tool_answer(python, {"stdout": "4\n", "stderr": "", "exit_code": 0}) == (
        "Output:\n```\n4\n```"
    )
    failed = format_tool_answer(python, {"stdout": "", "stderr": "NameError", "exit_code": 1})
    assert "NameError" in failed and "Exit status: 1" in failed
    calc = DirectCall("calculator", {"expression": "2/3"})
    assert format_tool_answer(calc, {"expression": "2/3", "result": "0.667", "exact": False}) == (
        "2/3 = 0.667 (approximately)"
    )
