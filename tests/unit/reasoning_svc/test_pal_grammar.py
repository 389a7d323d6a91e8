"""PAL's grammar: the worked examples' programs are in it, prose and anything beyond
arithmetic are not, and moe_svc's grammar compiler accepts it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from moe_svc.loader import load_model
from moe_svc.specialisation.pal_data import FAMILIES, generate
from moe_svc.structured import GrammarCompiler
from moe_svc.structured.grammars import lark_grammar
from reasoning_svc.prompts import PAL_EXAMPLES
from reasoning_svc.strategies.pal import PAL_GRAMMAR, extract_code
from tests.helpers.tiny_llm import make_tiny_llm


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> GrammarCompiler:
    tiny = load_model(make_tiny_llm(Path(tmp_path_factory.mktemp("tiny"))), "float32")
    tokenizer_json = (tiny.path / "tokenizer.json").read_text()
    return GrammarCompiler(
        tokenizer_json, tiny.model.config.vocab_size, sorted(tiny.stop_token_ids)
    )


def _accepted(compiler: GrammarCompiler, text: str) -> bool:
    """Whether the grammar takes the whole text and may end there."""
    matcher = compiler.compile(lark_grammar(PAL_GRAMMAR)).deep_copy()
    tokens = compiler.tokenizer.tokenize_str(text)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


@pytest.mark.parametrize("program", [p for _, p in PAL_EXAMPLES])
def test_the_examples_programs_are_in_the_grammar(compiler: GrammarCompiler, program: str) -> None:
    reply = f"```python\n{program}\n```"
    assert _accepted(compiler, reply)
    assert extract_code(reply) == program


@pytest.mark.parametrize(
    "program",
    [
        "total = round(483 * 29 / 7, 2)\nprint(total)",
        "a = 12\nb = -a + max(3, a % 5, 2 ** 3)\nprint(abs(b) // 2)",
        "print((1.5 + 2) * (3 - 4))",
        "import math\nprint(math.factorial(7) + math.gcd(84, 126))",
        "total = sum(range(1, 101))\nprint(total)",
    ],
)
def test_what_the_grammar_takes_runs_as_python(compiler: GrammarCompiler, program: str) -> None:
    assert _accepted(compiler, f"```python\n{program}\n```")
    ast.parse(program)


@pytest.mark.parametrize(
    "reply",
    [
        "The answer is 7.",  # prose
        "```python\nimport os\nprint(os.getcwd())\n```",  # beyond arithmetic
        "```python\nprint(open('x').read())\n```",
        "```python\nimport os\nprint(math.system(1))\n```",
        "```python\nx = (1 + 2\nprint(x)\n```",  # unbalanced
        "```python\nx = 3\n```",  # prints nothing
    ],
)
def test_prose_and_anything_else_are_not(compiler: GrammarCompiler, reply: str) -> None:
    assert not _accepted(compiler, reply)


def test_the_generated_training_programs_are_in_the_grammar(compiler: GrammarCompiler) -> None:
    # Two of every family: what the fine-tune teaches is what PAL's decoding allows.
    problems = list(generate(2 * len(FAMILIES), seed=7, held_out=Path("/nonexistent")))
    rejected = [
        p.program for p in problems if not _accepted(compiler, f"```python\n{p.program}\n```")
    ]
    assert rejected == []
