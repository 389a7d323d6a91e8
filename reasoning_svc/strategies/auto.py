"""`auto`: pick a strategy from the question's wording, and say why.

Rules, first match wins; they cost nothing, which matters because the
question already waited for the router:

1. it needs the outside world or exact execution (the time, a unit
   conversion, a URL, code to run, the document index, a training budget)
   -> `react` with tools_svc;
2. it is a puzzle that needs search (arrange, riddle, jugs, find a way,
   which order) -> `tot`;
3. it is arithmetic (two or more numbers, or one with a quantity word)
   -> `pal`: a program computes what a small model gets wrong by hand;
4. it is a deduction with one right answer (all/some/none, valid, true or
   false, who is) -> `self_consistency`;
5. short with no reasoning cue -> `direct`; anything else (plans,
   comparisons, explanations) -> `cot`.

Only the question's own words count, not code it shows in a fenced block:
a snippet that says `execute` or holds numbers is no request to run a
program ("explain this" with code is answered by `cot`, no tool runs).
"""

from __future__ import annotations

import re

from common.contracts.reasoning import Strategy

__all__ = ["choose_strategy"]

_TOOL = re.compile(
    r"(?i)\b(what time|time is it|current (?:time|date)|today'?s date|what day is|"
    r"convert|in (?:celsius|fahrenheit|kelvin|miles|kilometers|km|pounds|kg)\b|"
    r"https?://|run (?:this|the|my) (?:code|script|program|snippet)|execute|"
    r"search (?:the|our) (?:index|documents|knowledge)|knowledge base|"
    r"gpu[- ]hours?|h100|a100|training (?:run|cost|budget))"
)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?%?")
_QUANTITY = re.compile(
    r"(?i)\b(how (?:many|much|long|far|old)|total|sum|product|percent|average|cost|price|"
    r"speed|rate|ratio|profit|interest|calculate|compute|times|twice|half|double|triple)\b"
)
_SEARCH = re.compile(
    r"(?i)\b(arrange|arrangement|riddle|puzzle|find a way|in what order|which order|"
    r"game of 24|cross the river|jugs?|measure exactly|schedule)\b"
)
_DEDUCTION = re.compile(
    r"(?i)\b(all|some|no|none|every)\b.*\b(are|is)\b.*\?|\b(valid|invalid|true or false|"
    r"follows?|conclude|deduce|syllogism|logically|who is (?:the )?(?:oldest|youngest|tallest|"
    r"shortest|lying)|is lying)\b"
)
_REASONING_CUE = re.compile(
    r"(?i)\b(why|how|plan|compare|strategy|should|explain|step|reason|decide|trade-?offs?|"
    r"pros|cons|evaluate|analy[sz]e|design|prove)\b"
)


def choose_strategy(question: str) -> tuple[Strategy, str]:
    """(strategy, the reason in words)."""
    question = _FENCED.sub(" ", question)
    if _TOOL.search(question):
        return "react", "it needs a tool (time, conversion, a URL, code, the index or a budget)"
    if _SEARCH.search(question):
        return "tot", "it is a puzzle that needs a search over partial solutions"
    numbers = _NUMBER.findall(question)
    if len(numbers) >= 2 or (numbers and _QUANTITY.search(question)):
        return "pal", f"it is arithmetic ({len(numbers)} numbers): a program computes it exactly"
    if _DEDUCTION.search(question):
        return "self_consistency", "it is a deduction with one right answer: sample and vote"
    if len(question.split()) <= 8 and not _REASONING_CUE.search(question):
        return "direct", "it is short and asks for no reasoning"
    return "cot", "it needs step-by-step reasoning (a plan, comparison or explanation)"
