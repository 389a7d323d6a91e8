"""Program-aided reasoning (PAL, Gao et al. 2023): the model writes Python, tools_svc runs it.

The answer is the last line the program prints. A program that fails (no
code block, a non-zero exit, an exception, nothing printed) is shown to the
model with its error for another attempt, up to `pal_attempts` programs; if
none runs, the run answers with what the model's text states and reports
`stop_reason: "program_failed"`. A key without the `tools:python` scope runs
no program: the question is answered step by step (`cot`) instead.
"""

from __future__ import annotations

import re

from reasoning_svc.answers import extract_answer
from reasoning_svc.prompts import pal_messages
from reasoning_svc.run import Outcome, Run
from reasoning_svc.strategies.sampling import cot
from reasoning_svc.tools_client import missing_scope, tool_allowed

__all__ = ["extract_code", "program_aided"]

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
        text = await run.ask(pal_messages(question, failed), purpose="program", step=attempt)
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
