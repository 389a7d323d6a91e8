"""Next-token choice per sequence: grammar mask, penalties, temperature, top-k, top-p, logprobs.

Each request samples with its own `torch.Generator`, so a seeded request draws the
same tokens whatever else shares its batch. Greedy rows with no penalty, grammar or
logprobs, the common case of a batch, take one argmax over the whole batch; the
others are processed row by row, so a constrained row costs its neighbours nothing.

Log-probabilities are those of the distribution the token was drawn from, as
OpenAI defines them: after penalties, the grammar mask, temperature, top-k and
top-p (renormalised over the tokens kept). A greedy row reports the model's
distribution at temperature 1 (after penalties and mask).
"""

from __future__ import annotations

import torch

from moe_svc.engine.requests import GenerationRequest, SampledToken, SamplingParams

__all__ = ["apply_penalties", "sample_next_tokens", "sample_row", "sampling_logprobs"]


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


def _filtered(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """logits (V,) / temperature, with what top-k and top-p cut at -inf (vocabulary order)."""
    logits = logits / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        logits = logits.index_fill(0, order[drop], float("-inf"))
    return logits


def sample_row(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """One token from logits (V,) under temperature, top-k and top-p (already penalised)."""
    if params.greedy:
        return int(logits.argmax())
    probs = torch.softmax(_filtered(logits, params), dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def sampling_logprobs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """(V,) log-probabilities of the distribution `sample_row` draws from (greedy: T=1)."""
    if params.greedy:
        return torch.log_softmax(logits, dim=-1)
    return torch.log_softmax(_filtered(logits, params), dim=-1)


def _with_logprobs(token: int, logits: torch.Tensor, params: SamplingParams) -> SampledToken:
    assert params.logprobs is not None
    logprobs = sampling_logprobs(logits, params)
    top: list[tuple[int, float]] = []
    if params.logprobs > 0:
        values, ids = torch.topk(logprobs, params.logprobs)
        top = [(int(i), float(v)) for i, v in zip(ids, values, strict=True) if v > float("-inf")]
    return SampledToken(token, float(logprobs[token]), top)


def sample_next_tokens(logits: torch.Tensor, requests: list[GenerationRequest]) -> list[int]:
    """logits (n, V), one row per request -> the next token of each.

    A request that asked for logprobs gets its `SampledToken` appended to
    `pending_logprobs`; a constrained one samples among the tokens its grammar allows.
    """
    plain = [
        r.params.greedy
        and not r.params.penalised
        and r.constraint is None
        and r.params.logprobs is None
        for r in requests
    ]
    if all(plain):
        return [int(t) for t in logits.argmax(-1).tolist()]
    logits = logits.float()
    tokens: list[int] = []
    for row, request in enumerate(requests):
        if plain[row]:
            tokens.append(int(logits[row].argmax()))
            continue
        params = request.params
        row_logits = logits[row].clone()
        if params.penalised:
            apply_penalties(row_logits, params, request.prompt_ids, request.output_ids)
        if request.constraint is not None:
            request.constraint.mask(row_logits)
        token = sample_row(row_logits, params, request.generator)
        if params.logprobs is not None:
            request.pending_logprobs.append(_with_logprobs(token, row_logits, params))
        tokens.append(token)
    return tokens
