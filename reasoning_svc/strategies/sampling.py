"""Direct answers, chain of thought, and self-consistency (Wang et al. 2023).

Self-consistency samples `samples` chains of thought at a sampling
temperature, extracts each chain's final answer, and returns the answer most
chains agree on (answers are compared in normal form, so "$12" and "12.00"
are one vote). Ties go to the answer that was reached first, which keeps the
vote deterministic for a given set of samples.
"""

from __future__ import annotations

from collections import Counter

from reasoning_svc.answers import extract_answer, normalize_answer
from reasoning_svc.prompts import cot_messages, direct_messages
from reasoning_svc.run import Outcome, Run

__all__ = ["cot", "direct", "majority_vote", "self_consistency"]


async def direct(question: str, run: Run) -> Outcome:
    text = await run.ask(direct_messages(question), purpose="direct")
    answer = extract_answer(text) if "answer" in text.lower() else text.strip()
    run.event("answer", answer)
    return Outcome(answer, finished=bool(answer), stop_reason="answer" if answer else "no_answer")


async def cot(question: str, run: Run) -> Outcome:
    text = await run.ask(cot_messages(question), purpose="cot")
    run.event("thought", text)
    answer = extract_answer(text)
    run.event("answer", answer)
    return Outcome(answer, finished=bool(answer), stop_reason="answer" if answer else "no_answer")


def majority_vote(answers: list[str]) -> tuple[str | None, dict[str, int]]:
    """(winning raw answer, votes per normal form); empty answers do not vote."""
    keyed = [(normalize_answer(a), a) for a in answers if a.strip()]
    votes = Counter(key for key, _ in keyed)
    if not votes:
        return None, {}
    first_seen: dict[str, tuple[int, str]] = {}
    for position, (key, raw) in enumerate(keyed):
        first_seen.setdefault(key, (position, raw))
    winner = max(votes, key=lambda key: (votes[key], -first_seen[key][0]))
    return first_seen[winner][1], dict(votes)


async def self_consistency(question: str, run: Run) -> Outcome:
    n = run.params.samples
    temperature = run.params.sample_temperature

    async def sample(i: int) -> str:
        text = await run.ask(
            cot_messages(question), purpose="sample", step=i, temperature=temperature
        )
        answer = extract_answer(text)
        run.event("thought", text, i, answer=answer)
        return answer

    answers = await run.gather([sample(i) for i in range(n)])
    winner, votes = majority_vote(answers)
    tally = ", ".join(f"{k!r}: {v}" for k, v in sorted(votes.items(), key=lambda kv: -kv[1]))
    run.event("vote", tally or "no sample stated an answer", votes=votes, answers=answers)
    if winner is None:
        return Outcome("", finished=False, stop_reason="no_answer", votes=votes)
    run.event("answer", winner)
    return Outcome(winner, votes=votes)
