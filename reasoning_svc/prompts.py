"""The prompts of every strategy, in one place so that they can be read and tuned together.

They are short and literal: the default model is a 135M-parameter chat
model, which follows one clear format better than a long instruction.
"""

from __future__ import annotations

import json

from common.contracts.tools import ToolSpec
from reasoning_svc.llm import Message

__all__ = [
    "cot_messages",
    "describe_arguments",
    "direct_messages",
    "goal_check_messages",
    "pal_messages",
    "react_final_messages",
    "react_messages",
    "tot_final_messages",
    "tot_proposal_messages",
    "tot_value_messages",
]

DIRECT_SYSTEM = "Answer the question. Reply with the final answer only, on one line."
COT_SYSTEM = (
    "Solve the problem step by step. Write each step on its own line. "
    "Finish with a last line of the form 'Answer: <final answer>'."
)
PAL_SYSTEM = (
    "Solve the problem by writing a short Python 3 program. Use only the standard library. "
    "The program must print the final answer and nothing else. "
    "Reply with the program in one ```python code block."
)
REACT_SYSTEM = """Answer the question. You can use these tools:
{tools}

Use this format:
Thought: what to do next
Action: the tool name, one of [{names}]
Action Input: the tool's arguments as a JSON object
Observation: the tool's result (written for you; never write it yourself)
... (Thought / Action / Action Input / Observation can repeat)
Thought: I know the final answer
Final Answer: the answer to the question"""


def direct_messages(question: str) -> list[Message]:
    return [{"role": "system", "content": DIRECT_SYSTEM}, {"role": "user", "content": question}]


def cot_messages(question: str) -> list[Message]:
    return [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": question}]


def pal_messages(question: str, failed: list[tuple[str, str]] | None = None) -> list[Message]:
    messages: list[Message] = [
        {"role": "system", "content": PAL_SYSTEM},
        {"role": "user", "content": question},
    ]
    # (the model's earlier reply, what went wrong with it), oldest first.
    for reply, error in failed or []:
        messages.append({"role": "assistant", "content": reply})
        messages.append(
            {
                "role": "user",
                "content": f"The program failed:\n{error}\nFix it and reply with the whole "
                "program in one ```python code block.",
            }
        )
    return messages


def _steps(thoughts: list[str]) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(thoughts, 1)) or "(none yet)"


def tot_proposal_messages(question: str, thoughts: list[str], k: int) -> list[Message]:
    return [
        {
            "role": "system",
            "content": f"You propose possible next steps for solving a problem. Write {k} "
            "different next steps, one per line, each a single short step. If the steps so "
            "far already solve it, write a line 'Answer: <final answer>'.",
        },
        {
            "role": "user",
            "content": f"Problem: {question}\n\nSteps so far:\n{_steps(thoughts)}\n\n"
            "Possible next steps:",
        },
    ]


def tot_value_messages(question: str, thoughts: list[str]) -> list[Message]:
    return [
        {
            "role": "system",
            "content": "You judge partial solutions. Say whether the steps are correct and lead "
            "to solving the problem. Reply with one word: sure, likely or impossible.",
        },
        {
            "role": "user",
            "content": f"Problem: {question}\n\nSteps:\n{_steps(thoughts)}\n\nJudgement:",
        },
    ]


def tot_final_messages(question: str, thoughts: list[str]) -> list[Message]:
    return [
        {"role": "system", "content": COT_SYSTEM},
        {
            "role": "user",
            "content": f"Problem: {question}\n\nUse these steps:\n{_steps(thoughts)}\n\n"
            "Finish the solution.",
        },
    ]


def _tool_line(spec: ToolSpec) -> str:
    params = spec.function.parameters.get("properties", {})
    args = ", ".join(f'"{name}"' for name in params)
    return f"- {spec.function.name}: {spec.function.description} Arguments: {{{args}}}"


def react_messages(question: str, tools: list[ToolSpec], scratchpad: str) -> list[Message]:
    system = REACT_SYSTEM.format(
        tools="\n".join(_tool_line(t) for t in tools) or "(no tools are available)",
        names=", ".join(t.function.name for t in tools),
    )
    user = f"Question: {question}\n{scratchpad}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def react_final_messages(question: str, scratchpad: str) -> list[Message]:
    return [
        {
            "role": "system",
            "content": "The step limit is reached. Using what was found, give your best final "
            "answer on one line of the form 'Final Answer: <answer>'.",
        },
        {"role": "user", "content": f"Question: {question}\n{scratchpad}"},
    ]


def goal_check_messages(question: str, answer: str, scratchpad: str) -> list[Message]:
    return [
        {
            "role": "system",
            "content": "Check whether a proposed final answer fully answers the question, given "
            "the work shown. Reply 'YES' or 'NO: <what is missing>'.",
        },
        {
            "role": "user",
            "content": f"Question: {question}\n{scratchpad}\nProposed final answer: {answer}",
        },
    ]


def describe_arguments(arguments: dict[str, object]) -> str:
    return json.dumps(arguments, ensure_ascii=False)
