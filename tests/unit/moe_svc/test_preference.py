"""Preference tuning (`python -m moe_svc.preference`) on a tiny upcycled Mixtral: KTO and DPO
runs that move the model toward the liked answers and publish a servable version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, MixtralForCausalLM

from common.contracts.model_versions import ModelVersion
from moe_svc.kernels.shared_experts import SharedBaseMoeBlock
from moe_svc.loader import load_model
from moe_svc.modeling.checkpoint import to_per_expert_layout
from moe_svc.preference.__main__ import main
from moe_svc.preference.tuning import kto_desirable_weight
from tests.helpers.tiny_llm import CHATML_TEMPLATE, make_tiny_llm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = [
    ("What is the capital of France?", "Paris.", "The capital is a cat and a dog, today."),
    ("What is 2 + 3?", "5", "Numbers 0 1 2 3 4 5 6 7 8 9 and symbols."),
    ("Say hello.", "Hello world!", "Les élèves étudient à l'école."),
    ("What is the capital of Italy?", "Rome.", "Grüße aus München, schön! How are you?"),
]


def _turns(role: str, content: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content}]


def kto_lines() -> list[dict[str, Any]]:
    lines = []
    for question, good, bad in QUESTIONS:
        prompt = _turns("user", question)
        lines.append({"prompt": prompt, "completion": _turns("assistant", good), "label": True})
        lines.append({"prompt": prompt, "completion": _turns("assistant", bad), "label": False})
    return lines


def dpo_lines() -> list[dict[str, Any]]:
    return [
        {
            "prompt": _turns("user", question),
            "chosen": _turns("assistant", good),
            "rejected": _turns("assistant", bad),
        }
        for question, good, bad in QUESTIONS
    ]


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def make_upcycled(path: Path) -> Path:
    """A tiny Mixtral whose experts are one FFN plus rank-2 deltas (two experts left
    equal), stored per expert with a chat template file: the default model in miniature."""
    make_tiny_llm(path)
    state = load_file(str(path / "model.safetensors"))
    generator = torch.Generator().manual_seed(1)
    for name in list(state):
        if not name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            continue
        stacked = state[name]  # (E, out, in)
        E, n_out, n_in = stacked.shape
        experts = [stacked[0].clone() for _ in range(E)]
        for e in range(E // 2):
            b = torch.randn(n_out, 2, generator=generator) * 0.2
            a = torch.randn(2, n_in, generator=generator) * 0.2
            experts[e] = experts[e] + b @ a
        state[name] = torch.stack(experts)
    save_file(to_per_expert_layout(state), str(path / "model.safetensors"), {"format": "pt"})
    (path / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    return path


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_upcycled(tmp_path_factory.mktemp("models") / "tiny-moe")


def digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def run(parent: Path, models_dir: Path, data: Path, version: str, *extra: str) -> int:
    argv = ["--base", str(parent), "--models-dir", str(models_dir), "--data", str(data)]
    argv += [f"--version={version}", "--batch-size", "4", "--lr", "0.02", "--rank", "2"]
    argv += ["--no-progress", *extra]
    return main(argv)


def completion_logps(model_dir: Path, lines: list[dict[str, Any]], key: str) -> torch.Tensor:
    """log p(answer | prompt) of each line's `key` answer, through transformers."""
    model = MixtralForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for line in lines:
        prompt = tokenizer.apply_chat_template(
            line["prompt"], add_generation_prompt=True, tokenize=False
        )
        full = tokenizer.apply_chat_template(line["prompt"] + line[key], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logps = model(ids).logits.log_softmax(-1)[0, :-1]  # (T-1, V)
        targets = ids[0, 1:]
        picked = logps.gather(-1, targets[:, None])[:, 0]
        out.append(picked[len(prompt_ids) - 1 :].sum())
    return torch.stack(out)


def test_dpo_run_widens_the_chosen_margin_and_publishes_a_servable_version(
    parent: Path, tmp_path: Path
) -> None:
    before = digests(parent)
    data = write_jsonl(tmp_path / "dpo.jsonl", dpo_lines())
    models = tmp_path / "models"
    assert run(parent, models, data, "dpo-1", "--method", "dpo", "--steps", "6") == 0

    version = models / "versions" / "dpo-1"
    assert digests(parent) == before  # the parent is only read
    assert {p.name for p in version.iterdir()} == set(before) | {"version.json"}
    assert not [p for p in (models / "versions").iterdir() if p.name != "dpo-1"]
    record = ModelVersion.model_validate_json((version / "version.json").read_text())
    assert (record.id, record.parent, record.method, record.training.steps) == (
        "dpo-1",
        "tiny-moe",
        "dpo",
        6,
    )
    assert record.data.examples == 4
    assert record.data.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert record.serving is not None and record.serving.shared_base_layers == 2

    lines = dpo_lines()
    margin_before = completion_logps(parent, lines, "chosen") - completion_logps(
        parent, lines, "rejected"
    )
    margin_after = completion_logps(version, lines, "chosen") - completion_logps(
        version, lines, "rejected"
    )
    assert float(margin_after.mean()) > float(margin_before.mean()) + 1.0

    # served by moe_svc like the parent: experts as shared FFN + low-rank deltas
    loaded = load_model(version, "float32", decode_kernel=False)
    blocks = [layer.mlp for layer in loaded.model.model.layers]
    shared = [block for block in blocks if isinstance(block, SharedBaseMoeBlock)]
    assert len(shared) == len(blocks) == 2
    # the parent's rank-2 deltas plus rank-2 LoRA deltas, around the base it kept
    ranks = [(block.rank_gate_up, block.rank_down) for block in shared]
    assert all(0 < gate_up <= 2 + 2 and 0 < down <= 2 + 2 for gate_up, down in ranks)
    weights = load_file(str(version / "model.safetensors"))
    for layer in range(2):
        for w in ("w1", "w2", "w3"):
            name = f"model.layers.{layer}.block_sparse_moe.experts.{{}}.{w}.weight"
            assert torch.equal(weights[name.format(2)], weights[name.format(3)])
            assert not torch.equal(weights[name.format(0)], weights[name.format(2)])
    # ... and it computes what transformers computes from the same files, as it greedily
    # generates a few tokens
    reference = MixtralForCausalLM.from_pretrained(version, dtype=torch.float32).eval()
    ids = loaded.tokenizer.encode("What is the capital of France?")
    with torch.no_grad():
        for _ in range(4):
            logits = loaded.model(torch.tensor([ids]))[0, -1]
            expected = reference(torch.tensor([ids])).logits[0, -1]
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
            ids.append(int(logits.argmax()))


def test_kto_run_lowers_its_loss_and_refuses_a_taken_version(parent: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "kto.jsonl", kto_lines())
    models = tmp_path / "models"
    argv = ("--method", "kto", "--steps", "6", "--batch-size", "8")
    assert run(parent, models, data, "kto-1", *argv) == 0
    version = models / "versions" / "kto-1"
    record = ModelVersion.model_validate_json((version / "version.json").read_text())
    assert record.method == "kto" and record.training.steps == 6
    assert record.training.loss_first is not None and record.training.loss_last is not None
    assert record.training.loss_last < record.training.loss_first

    lines = kto_lines()
    liked = [line for line in lines if line["label"]]
    disliked = [line for line in lines if not line["label"]]

    def gap(model_dir: Path) -> float:
        return float(
            completion_logps(model_dir, liked, "completion").mean()
            - completion_logps(model_dir, disliked, "completion").mean()
        )

    assert gap(version) > gap(parent)

    written = digests(version)
    assert run(parent, models, data, "kto-1", *argv) == 2
    assert digests(version) == written


def test_kto_weighs_the_rarer_label_up_to_balance() -> None:
    assert kto_desirable_weight([True, False]) == 1.0
    assert kto_desirable_weight([True] * 9 + [False]) == pytest.approx(1 / 9)
    assert kto_desirable_weight([True] + [False] * 3) == 3.0
    assert kto_desirable_weight([True, True]) == 1.0  # one kind only: nothing to balance


def test_an_interrupted_run_resumes_from_its_last_checkpoint(
    parent: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_jsonl(tmp_path / "dpo.jsonl", dpo_lines())
    models = tmp_path / "models"
    common = ("--method", "dpo", "--save-every", "1")
    # a run cut short: its 2 steps checkpointed, not published
    work = models / "versions" / ".dpo-r.work"
    from moe_svc.preference import build

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "publish", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(parent, models, data, "dpo-r", *common, "--steps", "2")
    assert (work / "checkpoint-2").is_dir()
    assert not (models / "versions" / "dpo-r").exists()

    caplog.set_level("INFO", logger="moe_svc.preference")
    assert run(parent, models, data, "dpo-r", *common, "--steps", "4") == 0
    resumed = [r.__dict__["checkpoint"] for r in caplog.records if "checkpoint" in r.__dict__]
    assert [Path(checkpoint).name for checkpoint in resumed] == ["checkpoint-2"]
    steps = [r.__dict__["step"] for r in caplog.records if "step" in r.__dict__]
    assert steps == [3, 4]  # steps 1 and 2 were not trained again
    record = ModelVersion.model_validate_json(
        (models / "versions" / "dpo-r" / "version.json").read_text()
    )
    assert record.training.steps == 4
    assert not work.exists()  # checkpoints go once the version is published


def test_other_settings_do_not_resume_someone_elses_run(parent: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "dpo.jsonl", dpo_lines())
    models = tmp_path / "models"
    work = models / "versions" / ".v.work"
    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps({"parent": "elsewhere"}))
    assert run(parent, models, data, "v", "--method", "dpo", "--steps", "1") == 2
    assert not (models / "versions" / "v").exists()


@pytest.mark.parametrize(
    ("content", "method", "message"),
    [
        ("", "kto", "no examples"),
        ('{"prompt": [], "completion": [], "label": true}\n', "kto", ":1: 'prompt' is empty"),
        ("not json\n", "dpo", ":1: not JSON"),
        (json.dumps(dpo_lines()[0]) + "\n", "kto", ":1: not a kto example: completion"),
        (
            json.dumps(kto_lines()[0]) + "\n" + json.dumps({"prompt": "hi"}) + "\n",
            "kto",
            ":2: not a kto example: prompt",
        ),
    ],
)
def test_bad_data_is_refused_naming_the_line(
    parent: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    method: str,
    message: str,
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    assert run(parent, tmp_path / "models", data, "bad", "--method", method) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("version", ["", "Upper", "-lead", "a/b", "x" * 64, "..", ".hidden"])
def test_invalid_version_ids_are_refused(
    parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    data = write_jsonl(tmp_path / "dpo.jsonl", dpo_lines())
    assert run(parent, tmp_path / "models", data, version, "--method", "dpo") == 2
    assert "invalid version id" in capsys.readouterr().err
