"""One preference-tuning run: LoRA on the experts, trainable routers, TRL's KTO or DPO.

The model is the served Mixtral directory loaded by transformers. peft puts a
rank-r LoRA on each expert's stacked `gate_up_proj` and `down_proj` (its
`target_parameters`, one delta per expert) and trains a copy of every router
(`modules_to_save`). The reference policy is the same model with its adapters
disabled, so there is one copy of the weights in memory. fp32 on the CPU.

Experts the parent keeps identical (an upcycled model's dense experts, the shared
base its others are deltas of) get no gradient and stay identical: the merged
version's experts are that base plus the parent's delta plus a rank-r LoRA delta,
so moe_svc serves it in the same shared-base layout at a rank r higher. Were every
expert to move, the base would be lost and each delta measured against another
moving expert, at twice the rank.

Checkpoints go to the run's work directory every `save_every` steps; a rerun
resumes from the last one (the Trainer restores adapter, optimizer, scheduler,
RNG and step). The result is the base model with the adapters merged in: each
expert gains a rank-r delta, so an upcycled model's experts stay a shared FFN plus
low-rank deltas, the layout moe_svc serves fast.
"""

from __future__ import annotations

import logging
import re
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from peft.tuners.lora.layer import ParamWrapper
from transformers import (
    AutoTokenizer,
    MixtralForCausalLM,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_config import KTOConfig
from trl.trainer.kto_trainer import KTOTrainer

from moe_svc.preference.data import Method, PreferenceData

__all__ = [
    "RunResult",
    "TuneSettings",
    "identical_experts",
    "kto_desirable_weight",
    "load_policy",
    "lora_config",
    "train",
]

logger = logging.getLogger("moe_svc.preference")

# the stacked expert weights of transformers' Mixtral (E, 2I, C) and (E, C, I), and its routers
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
ROUTERS = ["mlp.gate"]


@dataclass(frozen=True)
class TuneSettings:
    """A run's hyperparameters; all but the schedule's length must match to resume."""

    method: Method
    steps: int  # optimizer steps in all (a rerun with more continues)
    batch_size: int = 4  # examples a step (KTO: > 1, its KL estimate pairs them in a batch)
    learning_rate: float = 1e-4  # AdamW, constant after `warmup_steps`
    warmup_steps: int = 0
    beta: float = 0.1  # strength of the pull toward the reference policy
    rank: int = 8  # LoRA rank of each expert's delta on gate_up and on down
    alpha: int = 16  # LoRA scaling alpha / rank
    max_length: int = 512  # tokens of prompt plus completion (longer: prompt cut from the left)
    seed: int = 0
    save_every: int = 10  # checkpoint every N steps (and at the end)
    gradient_checkpointing: bool = False  # less memory, about a third more time

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run it resumes."""
        settings = asdict(self)
        for free in ("steps", "save_every", "gradient_checkpointing"):
            settings.pop(free)
        return settings


@dataclass(frozen=True)
class RunResult:
    model: MixtralForCausalLM  # adapters merged in
    steps: int
    loss_first: float | None
    loss_last: float | None
    seconds: float  # of this invocation's training (a resumed run: since the resume)
    steps_per_second: float | None  # of this invocation's steps
    peak_rss_mb: float


def load_policy(path: Path) -> tuple[MixtralForCausalLM, PreTrainedTokenizerBase]:
    """The served model directory as a trainable fp32 transformers model and its tokenizer."""
    model = MixtralForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def lora_config(settings: TuneSettings) -> LoraConfig:
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=0.0,  # peft's parameter LoRA takes none
        target_modules=[],
        target_parameters=EXPERT_PARAMETERS,
        modules_to_save=ROUTERS,
        task_type="CAUSAL_LM",
    )


def identical_experts(model: MixtralForCausalLM) -> list[list[int]]:
    """Per layer, the experts equal to another expert of that layer."""
    found = []
    for layer in model.model.layers:
        gate_up, down = layer.mlp.experts.gate_up_proj, layer.mlp.experts.down_proj
        E = gate_up.shape[0]
        found.append(
            [
                e
                for e in range(E)
                if any(
                    torch.equal(gate_up[e], gate_up[o]) and torch.equal(down[e], down[o])
                    for o in range(E)
                    if o != e
                )
            ]
        )
    return found


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _freeze_experts(model: PeftModel, frozen: list[list[int]]) -> None:
    """Zero the LoRA gradients of `frozen[layer]`'s experts; their B stays 0 (its init)."""
    for name, module in model.named_modules():
        if not isinstance(module, ParamWrapper) or "default" not in module.lora_B:
            continue
        match = _LAYER.search(name)
        experts = frozen[int(match.group(1))] if match else []
        if not experts:
            continue
        weight_b = module.lora_B["default"].get_parameter("weight")  # (out, r*E): r_i * E + e
        E = int(module.num_experts)
        keep = torch.ones(weight_b.shape[1], dtype=weight_b.dtype)
        for e in experts:
            keep[e::E] = 0.0
        weight_b.register_hook(lambda grad, keep=keep: grad * keep)  # type: ignore[no-untyped-call]


def kto_desirable_weight(labels: list[bool]) -> float:
    """The weight of liked answers' loss that balances them against the disliked ones.

    KTO's paper (Ethayarajh et al. 2024, eq. 8) asks for
    desirable_weight * n_liked / (undesirable_weight * n_disliked) in [1, 4/3]; feedback
    is rarely balanced (thumbs up outnumber thumbs down), so the ratio is set to 1.
    """
    liked, disliked = sum(labels), len(labels) - sum(labels)
    return disliked / liked if liked and disliked else 1.0


def _trainer_args(settings: TuneSettings, work_dir: Path, progress: bool) -> dict[str, Any]:
    """Arguments that KTOConfig and DPOConfig share."""
    return {
        "output_dir": str(work_dir),
        "max_steps": settings.steps,
        "per_device_train_batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": "constant_with_warmup",
        "warmup_steps": settings.warmup_steps,
        "beta": settings.beta,
        "max_length": settings.max_length,
        "seed": settings.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": settings.save_every,
        "save_total_limit": 2,
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "dataloader_num_workers": 0,
        "disable_tqdm": not progress,
    }


class _LogProgress(TrainerCallback):
    """One log line a step (loss, reward margin, KL), readable without a terminal."""

    FIELDS = ("loss", "rewards/margins", "kl", "aux_loss", "grad_norm")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or "loss" not in logs:
            return
        values = {k: round(float(logs[k]), 4) for k in self.FIELDS if k in logs}
        logger.info(
            "step %d/%d %s",
            state.global_step,
            state.max_steps,
            " ".join(f"{k}={v}" for k, v in values.items()),
            extra={"step": state.global_step} | {k.replace("/", "_"): v for k, v in values.items()},
        )


def _losses(history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    losses = [float(entry["loss"]) for entry in history if "loss" in entry]
    return (losses[0], losses[-1]) if losses else (None, None)


def train(
    model: MixtralForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    data: PreferenceData,
    settings: TuneSettings,
    work_dir: Path,
    progress: bool = True,
) -> RunResult:
    """Train `model`'s adapters on `data`, resuming from `work_dir`'s last checkpoint."""
    if settings.method == "kto" and settings.batch_size < 2:
        raise ValueError("KTO needs a batch of at least 2 (its KL estimate pairs examples)")
    if settings.method == "kto" and len(data.examples) < settings.batch_size:
        raise ValueError(
            f"{data.path}: {len(data.examples)} examples, fewer than a batch "
            f"({settings.batch_size}); lower --batch-size"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    frozen = identical_experts(model)
    dataset = Dataset.from_list(data.examples)
    args = _trainer_args(settings, work_dir, progress)
    trainer: KTOTrainer | DPOTrainer
    if settings.method == "kto":
        labels = [bool(example["label"]) for example in data.examples]
        trainer = KTOTrainer(
            model=model,
            args=KTOConfig(**args, desirable_weight=kto_desirable_weight(labels)),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=[_LogProgress()],
        )
    else:
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**args),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=[_LogProgress()],
        )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # its dict a step: _LogProgress says it
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel)
    _freeze_experts(peft_model, frozen)
    checkpoint = get_last_checkpoint(str(work_dir)) if work_dir.exists() else None
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint, extra={"checkpoint": checkpoint})
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    resumed_at = int(Path(checkpoint).name.removeprefix("checkpoint-")) if checkpoint else 0
    steps_now = trainer.state.global_step - resumed_at
    trainer.save_state()
    loss_first, loss_last = _losses(trainer.state.log_history)
    merged = peft_model.merge_and_unload()
    return RunResult(
        model=merged,
        steps=trainer.state.global_step,
        loss_first=loss_first,
        loss_last=loss_last,
        seconds=round(seconds, 1),
        steps_per_second=round(steps_now / seconds, 4) if steps_now else None,
        # ru_maxrss is in KiB on Linux
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
