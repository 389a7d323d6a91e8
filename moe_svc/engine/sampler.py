"""Next-token choice per sequence: penalties, temperature, top-k, top-p, seeded sampling.

Each request samples with its own `torch.Generator`, so a seeded request draws the
same tokens whatever else shares its batch. Greedy rows without penalties, the
common case of a batch, take one argmax over the whole batch.
"""

from __future__ import annotations

import torch

from moe_svc.engine.requests import GenerationRequest, SamplingParams

__all__ = ["apply_penalties", "sample_next_tokens", "sample_row"]


def apply_penalties(
    logits: torch.Tensor, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]
) -> torch.Tensor:
    """logits (V,) with repetition (prompt and output) and presence/frequency (output) penalties."""
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt_ids) | set(output_ids)), dtype=torch.long)
        values = logits[seen]
        penalty = params.repetition_penalty
        # dividing a negative logit would raise it: multiply those instead (CTRL, transformers)
        logits[seen] = torch.where(values > 0, values / penalty, values * penalty)
    if output_ids and (params.presence_penalty != 0.0 or params.frequency_penalty != 0.0):
        counts = torch.bincount(torch.tensor(output_ids, dtype=torch.long))
        tokens = counts.nonzero().squeeze(1)
        logits[tokens] -= params.presence_penalty + params.frequency_penalty * counts[tokens].to(
            logits.dtype
        )
    return logits


def sample_row(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """One token from logits (V,) under temperature, top-k and top-p (already penalised)."""
    if params.greedy:
        return int(logits.argmax())
    logits = logits / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs[drop] = 0.0
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_next_tokens(logits: torch.Tensor, requests: list[GenerationRequest]) -> list[int]:
    """logits (n, V), one row per request -> the next token of each."""
    plain = [r.params.greedy and not r.params.penalised for r in requests]
    if all(plain):
        return [int(t) for t in logits.argmax(-1).tolist()]
    logits = logits.float()
    tokens: list[int] = []
    for row, request in enumerate(requests):
        if plain[row]:
            tokens.append(int(logits[row].argmax()))
            continue
        row_logits = logits[row].clone()
        if request.params.penalised:
            apply_penalties(row_logits, request.params, request.prompt_ids, request.output_ids)
        tokens.append(sample_row(row_logits, request.params, request.generator))
    return tokens
