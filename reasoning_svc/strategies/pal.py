"""Program-aided reasoning (PAL, Gao et al. 2023): the model writes Python, tools_svc runs it.

The answer is the last line the program prints. A program that fails (no
code block, a non-zero exit, an exception, nothing printed) is shown to the
model with its error for another attempt, up to `pal_attempts` programs; if
none runs, the run answers with what the model's text states and reports
`stop_reason: "program_failed"`. A key without the `tools:python` scope runs
no program: the question is answered step by step (`cot`) instead.

With `pal_constrained` (the default) the program is decoded under `PAL_GRAMMAR`, a
small Python subset (assignments and one print of arithmetic over numbers and
names, with round, abs, min and max) in the same code block the examples show, so
the reply is always a program, never prose, and always parses. A server that
ignores the grammar (another engine) gives free text, read as before.
"""

from __future__ import annotations

import re

from reasoning_svc.answers import extract_answer
from reasoning_svc.prompts import pal_messages
from reasoning_svc.run import Outcome, Run
from reasoning_svc.strategies.sampling import cot
from reasoning_svc.tools_client import missing_scope, tool_allowed

__all__ = ["PAL_GRAMMAR", "extract_code", "program_aided"]

# Lark (llguidance's dialect). Single spaces around operators, as the examples write them.
PAL_GRAMMAR = r"""
start: "```python\n" (assign "\n")* "print(" expr ")\n```"
assign: NAME " = " expr
expr: term (ADDOP term)*
term: factor (MULOP factor)*
factor: atom (" ** " atom)? | "-" atom
atom: NUMBER | NAME | "(" expr ")" | call
call: "round(" expr (", " INT)? ")" | "abs(" expr ")" | "min(" args ")" | "max(" args ")"
args: expr (", " expr)+
ADDOP: " + " | " - "
MULOP: " * " | " / " | " // " | " % "
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
    failed: list[tuple[str, str]] = []
    text = ""
    error: str | None
    for attempt in range(1, run.params.pal_attempts + 1):
        text = await run.ask(
            pal_messages(question, failed),
            purpose="program",
            step=attempt,
            grammar=PAL_GRAMMAR if run.params.pal_constrained else None,
        )
        code = extract_code(text)
        if code is None:
            error = "No ```python code block in the reply."
            run.event("observation", error, attempt)
            failed.append((text.strip(), error))
            continue
        run.event("program", code, attempt)
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
            attempt,
            stdout=stdout,
            stderr=stderr,
            exit_code=output.get("exit_code"),
        )
        if error is None:
            answer = stdout.splitlines()[-1].strip()
            run.event("answer", answer, attempt)
            return Outcome(answer)
        failed.append((f"```python\n{code}\n```", (stderr or error)[-1500:]))
    answer = extract_answer(text) if text else ""
    run.event("answer", answer, note="no program ran; the reply's own answer")
    return Outcome(answer, finished=False, stop_reason="program_failed")
