"""The programs step's data: what the model learns is what PAL asks and what PAL runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from moe_svc.chat_template import DEFAULT_TEMPLATE, ChatTemplate
from moe_svc.modeling import PRESETS, CausalLM
from moe_svc.specialisation.lora import export_artefact, install_experts, load_artefact
from moe_svc.specialisation.pal_data import generate
from moe_svc.specialisation.programs import (
    ProgramExample,
    answer_text,
    load_examples,
    program_batch,
)
from moe_svc.training.data import ByteTokenizer
from reasoning_svc.prompts import pal_messages
from reasoning_svc.strategies.pal import extract_code


def test_the_answer_is_a_program_pal_extracts_unchanged() -> None:
    for problem in generate(13, seed=5):
        assert extract_code(answer_text(problem.program, "<|im_end|>")) == problem.program


def test_examples_are_the_pal_conversation_and_its_program(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    problems = list(generate(4, seed=1))
    path.write_text("".join(json.dumps(vars(p)) + "\n" for p in problems))
    template, tokenizer = ChatTemplate(DEFAULT_TEMPLATE), ByteTokenizer()
    examples = load_examples(path, tokenizer, template, "<|im_end|>", 3, 10_000)
    assert len(examples) == 3
    first = examples[0]
    assert tokenizer.decode(first.prompt) == template.render(pal_messages(problems[0].question))
    assert tokenizer.decode(first.answer) == f"```python\n{problems[0].program}\n```<|im_end|>"
    with pytest.raises(ValueError, match="no problem fits"):
        load_examples(path, tokenizer, template, "<|im_end|>", 3, 50)


def test_batch_labels_are_exactly_the_answer_tokens_of_each_row() -> None:
    examples = [
        ProgramExample(prompt=[5, 6, 7, 8], answer=[20, 21]),
        ProgramExample(prompt=[9], answer=[30, 31, 32, 33]),
    ]
    ids, mask, labels, keep = program_batch(examples, pad_id=0)
    assert ids.tolist() == [[5, 6, 7, 8, 20, 21], [0, 9, 30, 31, 32, 33]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]]
    assert keep == 5
    # the last 5 positions; position p is scored on token p + 1
    assert labels.tolist() == [[-100, -100, 20, 21, -100], [30, 31, 32, 33, -100]]


def test_kept_logits_give_the_loss_of_the_full_forward() -> None:
    torch.manual_seed(0)
    model = CausalLM(PRESETS["tiny-dense"]).eval()
    examples = [
        ProgramExample(prompt=list(range(40, 60)), answer=[1, 2, 3]),
        ProgramExample(prompt=list(range(70, 75)), answer=[4, 5, 6, 7, 8]),
    ]
    ids, mask, labels, keep = program_batch(examples, pad_id=0)
    with torch.no_grad():
        kept = model(ids, mask, logits_to_keep=keep)
        for row, example in enumerate(examples):
            alone = torch.tensor([example.prompt + example.answer])
            logits = model(alone)[0, -len(example.answer) - 1 : -1]
            expected = F.cross_entropy(logits, torch.tensor(example.answer))
            row_labels = labels[row]
            got = F.cross_entropy(kept[row][row_labels != -100], row_labels[row_labels != -100])
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_an_exported_artefact_loads_back_into_the_layers(tmp_path: Path) -> None:
    model = CausalLM(PRESETS["tiny-dense"])
    ffns = install_experts(model, 8, 4, 8.0, 2, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for ffn in ffns:
            ffn.router.normal_(generator=generator)
            for b in (*ffn.gate_b, *ffn.up_b, *ffn.down_b):
                b.normal_(generator=generator)
    path = tmp_path / "a.safetensors"
    export_artefact(ffns, path, dense_experts=frozenset({6, 7}))

    again = install_experts(CausalLM(PRESETS["tiny-dense"]), 8, 4, 8.0, 2, seed=9)
    assert load_artefact(again, path) == frozenset({6, 7})
    for old, new in zip(ffns, again, strict=True):
        torch.testing.assert_close(new.router, old.router.bfloat16().float())
        for e in range(6):
            for proj in ("w1", "w2", "w3"):
                # equal up to the artefact's bf16 rounding of both factors
                error = (new.delta(e, proj) - old.delta(e, proj)).norm() / old.delta(e, proj).norm()
                assert error < 0.01
        assert new.delta(7, "w1").abs().max() == 0  # a dense expert stays the dense FFN
    wrong_rank = install_experts(CausalLM(PRESETS["tiny-dense"]), 8, 2, 4.0, 2, seed=0)
    with pytest.raises(ValueError, match="rank 4"):
        load_artefact(wrong_rank, path)
