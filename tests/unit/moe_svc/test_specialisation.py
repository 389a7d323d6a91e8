"""Expert specialisation (Branch-Train-MiX): a smoke run on a tiny random model.

The tiny dense preset with byte tokens trains in seconds on eight synthetic domains
that differ in alphabet and shape, so the branch step has something to learn, the
mix step has something to separate, and the exported artefact must rebuild, through
build_default's own code, the very MoE that was trained.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from moe_svc.build_default import apply_artefact, upcycle
from moe_svc.modeling import PRESETS, CausalLM, load_pretrained
from moe_svc.modeling.config import ModelConfig
from moe_svc.specialisation.analysis import RoutingCounts, mutual_information, upcycled_routers
from moe_svc.specialisation.corpora import DOC_SEPARATOR
from moe_svc.specialisation.domains import DOMAINS, EXPERT_OF
from moe_svc.specialisation.lora import (
    expert_ffns,
    export_artefact,
    install_experts,
    load_trainable_state,
    set_mode,
)
from moe_svc.specialise import main as specialise

_ALPHABETS = [
    "0123456789+-*=",
    "def return if else for in range(): ",
    "atom energy cell gene orbit ",
    "once upon a time the dragon sang ",
    "king empire war century treaty ",
    "ciao grazie buongiorno perché ",
    "<|hi|> how are you fine thanks ",
    "news market sport report today ",
]


def _write_corpora(root: Path) -> None:
    rng = random.Random(0)
    for domain, alphabet in zip(DOMAINS, _ALPHABETS, strict=True):
        words = alphabet.split() if " " in alphabet else list(alphabet)
        folder = root / domain
        folder.mkdir(parents=True)
        for split, docs in (("train", 30), ("val", 6)):
            text = DOC_SEPARATOR.join(
                " ".join(rng.choice(words) for _ in range(60)) for _ in range(docs)
            )
            (folder / f"{split}.txt").write_text(text)
    (root / "manifest.json").write_text("{}")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("specialise")
    _write_corpora(root / "corpora")
    threads = torch.get_num_threads()
    try:
        record = specialise(
            [
                "--preset", "smoke", "--init-config", "tiny-dense", "--threads", "1",
                "--corpora", str(root / "corpora"), "--run-dir", str(root / "run"),
                "--programs-data", str(root / "programs.jsonl"),
            ]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "record": record}


def test_branch_step_lowers_each_domains_held_out_loss(smoke_run: dict[str, Any]) -> None:
    branch = smoke_run["record"]["branch"]
    assert set(branch) == set(DOMAINS)
    for domain, result in branch.items():
        assert result["val_loss_after"] < result["val_loss_before"] - 0.05, domain
        assert result["tokens"] == 12 * 4 * 32


def test_experts_diverge_from_the_dense_ffn_and_from_each_other(
    smoke_run: dict[str, Any],
) -> None:
    divergence = smoke_run["record"]["divergence"]
    assert min(divergence["relative_delta_norm"]) > 1e-3
    cosine = torch.tensor(divergence["pairwise_cosine"])
    off_diagonal = cosine[~torch.eye(len(DOMAINS), dtype=torch.bool)]
    assert off_diagonal.max() < 0.9  # eight different directions, not one shared update


def test_mix_step_routes_domains_to_their_own_experts(smoke_run: dict[str, Any]) -> None:
    accuracy = smoke_run["record"]["mix"]["top1_is_own_domain"]
    assert min(accuracy) > 0.3  # chance is 1/8


def test_artefact_has_build_defaults_format(smoke_run: dict[str, Any]) -> None:
    record = smoke_run["record"]
    tensors = load_file(record["artefact"]["path"])
    config = PRESETS["tiny-dense"]
    C, inner = config.hidden_size, config.intermediate_size
    assert tensors["layers.1.router.weight"].shape == (8, C)
    assert tensors["layers.1.experts.7.w1.lora_a"].shape == (4, C)
    assert tensors["layers.1.experts.7.w1.lora_b"].shape == (inner, 4)
    assert tensors["layers.0.experts.2.w2.lora_a"].shape == (4, inner)
    assert tensors["layers.0.experts.2.w2.lora_b"].shape == (C, 4)
    assert tensors["layers.0.experts.2.w3.lora_b"].dtype == torch.bfloat16
    saved = json.loads(Path(record["artefact"]["path"]).with_suffix(".json").read_text())
    assert saved["seed"] == 1234 and saved["finetune"]["tokens"] == 6 * 8 * 32


def test_rerun_resumes_from_the_finished_steps(smoke_run: dict[str, Any]) -> None:
    root = smoke_run["root"]
    path = Path(smoke_run["record"]["artefact"]["path"])
    before = load_file(str(path))
    record = specialise(
        [
            "--preset", "smoke", "--init-config", "tiny-dense", "--threads", "1",
            "--corpora", str(root / "corpora"), "--run-dir", str(root / "run"),
            "--programs-data", str(root / "programs.jsonl"),
        ]
    )  # fmt: skip
    assert record["branch"] == smoke_run["record"]["branch"]
    assert record["programs"] == smoke_run["record"]["programs"]
    after = load_file(str(path))  # (not bytes: safetensors orders its metadata at random)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_build_default_turns_the_artefact_into_the_trained_moe(
    smoke_run: dict[str, Any], tmp_path: Path
) -> None:
    run = smoke_run["root"] / "run"
    dense = CausalLM(PRESETS["tiny-dense"])
    dense.load_state_dict(torch.load(run / "random_base.pt", weights_only=True))
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    ffns = install_experts(dense, 8, 4, 8.0, 2, 0)
    # the last step's state: what the artefact holds
    load_trainable_state(ffns, torch.load(run / "programs_done.pt", weights_only=False)["state"])
    artefact = tmp_path / "artefact.safetensors"
    export_artefact(expert_ffns(dense), artefact, dtype=torch.float32)

    config = PRESETS["tiny-dense"]
    moe = upcycle(dense_state, config.num_hidden_layers, config.hidden_size)
    assert apply_artefact(moe, artefact) == config.num_hidden_layers * (1 + 8 * 3)
    moe_dir = tmp_path / "moe"
    moe_dir.mkdir()
    moe_config = ModelConfig(
        **{**vars(config), "model_type": "mixtral", "extra": {}},
    )
    moe_config.num_local_experts, moe_config.num_experts_per_tok = 8, 2
    moe_config.to_json_file(moe_dir / "config.json")
    save_file(
        {k: v for k, v in moe.items() if k != "lm_head.weight"}, str(moe_dir / "x.safetensors")
    )
    built = load_pretrained(moe_dir)

    x = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    set_mode(ffns, "routed")
    dense.eval()
    with torch.no_grad():
        expected = dense(x)
        got = built(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # and the experts really differ: the routed model is not the dense one any more
    set_mode(ffns, "base")
    with torch.no_grad():
        assert (dense(x) - expected).abs().max() > 1e-3


def test_programs_step_teaches_the_answers_to_held_out_problems(
    smoke_run: dict[str, Any],
) -> None:
    programs = smoke_run["record"]["programs"]
    assert programs["answers_seen"] == 20 * 4
    # a random 2-layer model learns slowly (5.37 -> 5.31 nats here); the committed
    # artefact's record holds the real model's figures
    assert programs["answer_loss_after"] < programs["answer_loss_before"] - 0.03
    assert programs["train"][-1][1] < programs["train"][0][1]


def test_programs_step_from_an_artefact_changes_only_the_program_experts(
    smoke_run: dict[str, Any], tmp_path: Path
) -> None:
    root = smoke_run["root"]
    source = Path(smoke_run["record"]["artefact"]["path"])
    out = tmp_path / "tuned.safetensors"
    record = specialise(
        [
            "--preset", "smoke", "--init-config", "tiny-dense", "--threads", "1",
            "--corpora", str(root / "corpora"), "--run-dir", str(tmp_path / "run"),
            "--programs-data", str(root / "programs.jsonl"), "--from-artefact", str(source),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert "branch" not in record and record["earlier"]["seed"] == 1234
    before, after = load_file(str(source)), load_file(str(out))
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    program_experts = {f".experts.{EXPERT_OF['mathematics']}.", f".experts.{EXPERT_OF['code']}."}
    assert any(".router." in k for k in changed)
    assert any(e in k for k in changed for e in program_experts)
    assert all(".router." in k or any(e in k for e in program_experts) for k in changed)


def test_upcycled_routers_are_the_ones_build_default_draws() -> None:
    config = PRESETS["tiny-dense"]
    state = CausalLM(config).state_dict()
    moe = upcycle(state, config.num_hidden_layers, config.hidden_size)
    routers = upcycled_routers(config.num_hidden_layers, 8, config.hidden_size)
    for layer, router in enumerate(routers):
        assert torch.equal(moe[f"model.layers.{layer}.block_sparse_moe.gate.weight"], router)


def test_mutual_information_of_routing_tables() -> None:
    assert mutual_information(torch.ones(8, 8)) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(torch.eye(8) * 50) == pytest.approx(3.0)
    counts = RoutingCounts(num_layers=1, num_domains=2, num_experts=4)
    counts.add(0, 0, torch.tensor([[5.0, 1, 0, 0], [4.0, 0, 3, 0]]), top_k=2)
    counts.add(0, 1, torch.tensor([[0.0, 0, 1, 6], [0.0, 2, 0, 7]]), top_k=2)
    assert counts.favourite_experts() == [0, 3]
    assert counts.mutual_information() == pytest.approx(1.0)
    assert counts.shares()[0].tolist() == [0.5, 0.25, 0.25, 0.0]
