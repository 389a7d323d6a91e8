"""Tree-of-Thoughts (Yao et al. 2023), breadth-first with a beam.

A state is the list of thoughts (partial solution steps) so far, starting
empty. At each depth every state in the beam gets a proposal prompt that
asks for `proposals` next steps; every extended state then gets a value
prompt that judges it sure / likely / impossible (scored 20 / 1 / 0.001, as
in the paper's value prompts); the `beam_width` best states, ties broken by
the order they were proposed, form the next beam. The search stops after
`depth` levels or as soon as the best state ends with an `Answer:` line;
otherwise a last prompt finishes the best state's solution.

Model calls: at most depth x beam_width x (1 + proposals) + 1.
"""

from __future__ import annotations

import re

from reasoning_svc.answers import extract_answer
from reasoning_svc.prompts import tot_final_messages, tot_proposal_messages, tot_value_messages
from reasoning_svc.run import Outcome, Run

__all__ = ["VALUES", "parse_proposals", "parse_value", "tree_of_thoughts"]

VALUES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
# A judgement the model did not state in one of the three words.
UNCLEAR_VALUE = 0.1
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|step\s*\d+\s*[:.)-])\s*", re.IGNORECASE)
_ANSWER = re.compile(r"(?i)^\s*(?:final\s+)?answer\s*[:=]")


def parse_proposals(text: str, k: int) -> list[str]:
    """Up to `k` distinct next steps, one per line, bullets and numbering removed."""
    seen: set[str] = set()
    steps: list[str] = []
    for line in text.splitlines():
        step = _BULLET.sub("", line).strip()
        if not step or step.lower().endswith("next steps:") or step.lower() in seen:
            continue
        seen.add(step.lower())
        steps.append(step)
        if len(steps) == k:
            break
    return steps


def parse_value(text: str) -> float:
    """The first of sure / likely / impossible the judgement names."""
    words = re.findall(r"[a-z]+", text.lower())
    for word in words:
        if word in VALUES:
            return VALUES[word]
    return UNCLEAR_VALUE


def _is_answer(thought: str) -> bool:
    return bool(_ANSWER.match(thought))


async def tree_of_thoughts(question: str, run: Run) -> Outcome:
    p = run.params
    beam: list[list[str]] = [[]]
    for depth in range(1, p.depth + 1):
        proposals = await run.gather(
            [
                run.ask(
                    tot_proposal_messages(question, state, p.proposals),
                    purpose="propose",
                    step=depth,
                    temperature=p.sample_temperature,
                )
                for state in beam
            ]
        )
        candidates: list[list[str]] = []
        for parent, (state, text) in enumerate(zip(beam, proposals, strict=True)):
            for thought in parse_proposals(text, p.proposals):
                run.event("proposal", thought, depth, parent=parent)
                candidates.append([*state, thought])
        if not candidates:
            break
        judgements = await run.gather(
            [
                run.ask(tot_value_messages(question, c), purpose="value", step=depth)
                for c in candidates
            ]
        )
        values = [parse_value(j) for j in judgements]
        for number, (candidate, value) in enumerate(zip(candidates, values, strict=True)):
            run.event("evaluation", candidate[-1], depth, candidate=number, value=value)
        order = sorted(range(len(candidates)), key=lambda i: (-values[i], i))
        kept = order[: p.beam_width]
        beam = [candidates[i] for i in kept]
        run.event(
            "selection",
            " | ".join(beam[0]),
            depth,
            kept=kept,
            values=[values[i] for i in kept],
        )
        if _is_answer(beam[0][-1]):
            answer = extract_answer(beam[0][-1])
            run.event("answer", answer, depth)
            return Outcome(answer)

    best = beam[0]
    text = await run.ask(tot_final_messages(question, best), purpose="finish")
    answer = extract_answer(text)
    run.event("answer", answer)
    return Outcome(answer, finished=bool(answer), stop_reason="answer" if answer else "no_answer")
