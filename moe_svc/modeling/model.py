"""Decoder-only transformer covering Llama (dense) and Mixtral (sparse MoE).

Module and parameter names mirror transformers' `LlamaForCausalLM` /
`MixtralForCausalLM` (`model.layers.N.self_attn.q_proj`, `model.layers.N.mlp...`,
`lm_head`), so a Hugging Face state dict loads without renaming.

`model(input_ids)` returns the logits `(B, T, V)`. With `output_router_logits=True`
it returns a `CausalLMOutput` that also carries the router logits and the router
losses used in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import nn

from moe_svc.modeling.config import ModelConfig
from moe_svc.modeling.kv_cache import AttentionPlan, KVCache, plan_attention
from moe_svc.modeling.layers import MLP, Attention, RMSNorm, RotaryEmbedding
from moe_svc.modeling.losses import ExpertStats, load_balancing_loss, router_z_loss
from moe_svc.modeling.moe import Experts, SparseMoeBlock

__all__ = ["CausalLM", "CausalLMOutput", "DecoderLayer"]


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # (B, T, V)
    router_logits: tuple[torch.Tensor, ...]  # per MoE layer (B*T, E); empty for dense models
    aux_loss: torch.Tensor  # load-balancing loss (0 for dense models)
    z_loss: torch.Tensor  # router z-loss (0 for dense models)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp: SparseMoeBlock | MLP = SparseMoeBlock(config) if config.is_moe else MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        plan: AttentionPlan,
        cache: KVCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x (B, T, C) -> (x, router_logits or None, selected_experts or None)."""
        x = x + self.self_attn(self.input_layernorm(x), rope, plan, cache)
        h = self.post_attention_layernorm(x)
        if isinstance(self.mlp, SparseMoeBlock):
            y, router_logits, selected_experts = self.mlp(h)
            return x + y, router_logits, selected_experts
        return x + self.mlp(h), None, None


class DecoderModel(nn.Module):
    """The transformer body: embeddings, decoder layers, final norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


class CausalLM(nn.Module):
    """Llama / Mixtral causal language model."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # set to an ExpertStats to count routed tokens on every forward (serving metrics)
        self.expert_stats: ExpertStats | None = None
        if self.model.embed_tokens.weight.device.type != "meta":
            self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, Experts):
            nn.init.normal_(module.gate_up_proj, mean=0.0, std=std)
            nn.init.normal_(module.down_proj, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def new_expert_stats(self) -> ExpertStats:
        """Start counting routed tokens per layer and expert (replaces any previous counter)."""
        self.expert_stats = ExpertStats(
            self.config.num_hidden_layers, self.config.num_local_experts
        )
        return self.expert_stats

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        """A KV cache for `batch_size` sequences of up to `max_len` tokens each.

        Its dtype is the activations' (the embedding's): served bf16 weights can
        run under fp32 activations (moe_svc.kernels).
        """
        weight = self.model.embed_tokens.weight
        return KVCache.from_config(
            self.config, batch_size, max_len, dtype or weight.dtype, weight.device
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @overload
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = ...,
        cache: KVCache | None = ...,
        *,
        output_router_logits: Literal[False] = ...,
        logits_to_keep: int = ...,
        inputs_embeds: torch.Tensor | None = ...,
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = ...,
        cache: KVCache | None = ...,
        *,
        output_router_logits: Literal[True],
        logits_to_keep: int = ...,
        inputs_embeds: torch.Tensor | None = ...,
    ) -> CausalLMOutput: ...

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        *,
        output_router_logits: bool = False,
        logits_to_keep: int = 0,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor | CausalLMOutput:
        """input_ids (B, T) -> logits (B, T, V), or CausalLMOutput when output_router_logits.

        attention_mask (B, T): 1 for real tokens, 0 for padding, covering the new
        tokens only (a cache remembers the earlier ones). Positions count real tokens,
        so a left-padded sequence gets the logits it would get unpadded.
        cache: a KVCache to read earlier keys from and append these tokens to.
        logits_to_keep: if > 0, only the last that many positions get logits
        (decoding needs just the last one; the vocabulary projection is expensive).
        inputs_embeds (B, T, C): the input vectors to use instead of input_ids' embeddings
        (images spliced into a prompt, moe_svc.vision); input_ids still gives the shape.
        """
        plan = plan_attention(input_ids, attention_mask, cache, self.config.sliding_window)
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        rope = self.model.rotary_emb(plan.position_ids, x.dtype)
        token_mask = None if attention_mask is None else attention_mask.reshape(-1).bool()
        router_logits: list[torch.Tensor] = []
        routed_layers: list[int] = []
        routed: list[torch.Tensor] = []
        for layer_idx, layer in enumerate(self.model.layers):
            x, layer_router_logits, selected_experts = layer(x, rope, plan, cache)
            if layer_router_logits is not None:
                router_logits.append(layer_router_logits)
                if self.expert_stats is not None:
                    assert selected_experts is not None
                    routed_layers.append(layer_idx)
                    routed.append(selected_experts)
        if self.expert_stats is not None and routed:
            self.expert_stats.update_layers(routed_layers, routed, token_mask)
        x = self.model.norm(x)
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        logits: torch.Tensor = self.lm_head(x)  # (B, T, V)
        if not output_router_logits:
            return logits
        if router_logits:
            c = self.config
            aux_loss = load_balancing_loss(
                router_logits, c.num_local_experts, c.num_experts_per_tok, attention_mask
            )
            z_loss = router_z_loss(router_logits, attention_mask)
        else:
            aux_loss = z_loss = logits.new_zeros((), dtype=torch.float32)
        return CausalLMOutput(logits, tuple(router_logits), aux_loss, z_loss)
