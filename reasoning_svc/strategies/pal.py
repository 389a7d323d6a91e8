"""Program-aided reasoning (PAL, Gao et al. 2023): the model writes Python, tools_svc runs it.

The answer is the last line the program prints. A program that fails (no
code block, a non-zero exit, an exception, nothing printed) is shown to the
model with its error for another attempt, up to `pal_attempts` programs; if
none runs, the run answers with what the model's text states and reports
`stop_reason: "program_failed"`. A key without the `tools:python` scope runs
no program: the question is answered step by step (`cot`) instead.

With `pal_constrained` (the default) the program is decoded under `PAL_GRAMMAR`, a
small Python subset (assignments and one print of arithmetic over numbers and
names, with round, abs, min, max, sum(range(...)) and a few of `math`'s functions)
in the same code block the examples show, so the reply is always a program, never
prose, and always parses. A server that
ignores the grammar (another engine) gives free text, read as before.

With `pal_samples` k > 1 (a request's `samples` sets it) k programs are written, the
first greedy and the rest sampled, each is run, and their printed results vote
(`votes`); the answer's trace event names the program that produced it.
"""

from __future__ import annotations

import re

from reasoning_svc.answers import extract_answer, normalize_answer
from reasoning_svc.prompts import pal_messages
from reasoning_svc.run import Outcome, Run
from reasoning_svc.strategies.sampling import cot, majority_vote
from reasoning_svc.tools_client import missing_scope, tool_allowed

__all__ = ["PAL_GRAMMAR", "extract_code", "program_aided"]

# Lark (llguidance's dialect). Single spaces around operators, as the examples write them.
PAL_GRAMMAR = r"""
start: "```python\n" ("import math\n")? (assign "\n")* "print(" expr ")\n```"
assign: NAME " = " expr
expr: term (ADDOP term)*
term: factor (MULOP factor)*
factor: atom (" ** " atom)? | "-" atom
atom: NUMBER | NAME | "(" expr ")" | call
call: "round(" expr (", " INT)? ")" | "abs(" expr ")" | "min(" args ")" | "max(" args ")"
    | "sum(range(" expr ", " expr "))" | "math." MATHFN "(" expr (", " expr)? ")"
args: expr (", " expr)+
ADDOP: " + " | " - "
MULOP: " * " | " / " | " // " | " % "
MATHFN: "factorial" | "gcd" | "lcm" | "sqrt" | "floor" | "ceil" | "comb"
NAME: /[a-z_][a-z0-9_]{0,39}/
NUMBER: /[0-9]{1,15}(\.[0-9]{1,10})?/
INT: /[0-9]{1,2}/
"""

_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str | None:
    """The first fenced code block, or the whole reply when it reads as bare Python."""
    blocks = [str(b).strip() for b in _FENCED.findall(text) if str(b).strip()]
    if blocks:
        return blocks[0]
    stripped = text.strip()
    if "print(" in stripped and not stripped.lower().startswith(("here", "sure", "the ")):
        return stripped
    return None


async def program_aided(question: str, run: Run) -> Outcome:
    if not tool_allowed("python"):
        run.event("choice", f"cot: {missing_scope('python')}, so no program runs", strategy="cot")
        return await cot(question, run)
    if run.params.pal_samples > 1:
        return await _voted_programs(question, run, run.params.pal_samples)
    failed: list[tuple[str, str]] = []
    text = ""
    for attempt in range(1, run.params.pal_attempts + 1):
        text = await _ask_program(question, run, attempt, failed)
        code = extract_code(text)
        if code is None:
            missing = "No ```python code block in the reply."
            run.event("observation", missing, attempt)
            failed.append((text.strip(), missing))
            continue
        printed, error, stderr = await _execute(code, run, attempt)
        if printed is not None:
            run.event("answer", printed, attempt)
            return Outcome(printed)
        failed.append((f"```python\n{code}\n```", (stderr or error or "")[-1500:]))
    answer = extract_answer(text) if text else ""
    run.event("answer", answer, note="no program ran; the reply's own answer")
    return Outcome(answer, finished=False, stop_reason="program_failed")


async def _ask_program(
    question: str,
    run: Run,
    step: int,
    failed: list[tuple[str, str]] | None = None,
    temperature: float | None = None,
) -> str:
    return await run.ask(
        pal_messages(question, failed),
        purpose="program",
        step=step,
        temperature=temperature,
        grammar=PAL_GRAMMAR if run.params.pal_constrained else None,
    )


async def _execute(code: str, run: Run, step: int) -> tuple[str | None, str | None, str]:
    """(the last line printed, None) when the program ran; else (None, the error, stderr)."""
    run.event("program", code, step)
    observation = await run.call_tool("python", {"code": code})
    output = observation.output if isinstance(observation.output, dict) else {}
    stdout = str(output.get("stdout") or "").strip()
    stderr = str(output.get("stderr") or "").strip()
    crashed = output.get("exit_code") not in (0, None)
    error = observation.error or (stderr if crashed else None)
    if error is None and not stdout:
        error = "The program printed nothing; it must print the answer."
    run.event(
        "observation",
        f"Error: {error}" if error else stdout,
        step,
        stdout=stdout,
        stderr=stderr,
        exit_code=output.get("exit_code"),
    )
    if error is not None:
        return None, error, stderr
    return stdout.splitlines()[-1].strip(), None, stderr


async def _voted_programs(question: str, run: Run, k: int) -> Outcome:
    """k programs (the first greedy, the rest sampled), each run; the printed results vote.

    A program that does not run does not vote; ties go to the earliest program, so the
    greedy one wins a tie. The answer names the program that produced it.
    """

    async def one(i: int) -> tuple[str, str | None, str]:
        temperature = 0.0 if i == 0 else run.params.sample_temperature
        text = await _ask_program(question, run, i + 1, temperature=temperature)
        code = extract_code(text)
        if code is None:
            run.event("observation", "No ```python code block in the reply.", i + 1)
            return "", None, text
        printed, _, _ = await _execute(code, run, i + 1)
        return printed or "", code, text

    results = await run.gather([one(i) for i in range(k)])
    printed = [out for out, _, _ in results]
    winner, votes = majority_vote(printed)
    tally = ", ".join(f"{key!r}: {n}" for key, n in sorted(votes.items(), key=lambda kv: -kv[1]))
    run.event("vote", tally or "no program ran", votes=votes, answers=printed)
    if winner is None:
        answer = extract_answer(results[0][2])
        run.event("answer", answer, note="no program ran; the first reply's own answer")
        return Outcome(answer, finished=False, stop_reason="program_failed", votes=votes)
    key = normalize_answer(winner)
    program = next(code for out, code, _ in results if out and normalize_answer(out) == key)
    run.event("answer", winner, program=program)
    return Outcome(winner, votes=votes)
