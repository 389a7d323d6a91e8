"""Ideation -> visuals -> critique: moe_svc proposes ideas, we draw them, moe_svc critiques.

The default moe_svc model is a 135M-parameter chat model: left to itself it
follows a format only some of the time. So the ideas are asked for under a JSON
schema (`ideas_schema`): moe_svc decodes under its grammar, and the answer is n
complete ideas whose visual is "a <colour> <garment>" the image models know.
A server that ignores the schema gets the plain labelled-lines prompt too, and
the parser takes what it can (labelled lines, numbered items). When nothing
usable comes back (or moe_svc is down) the ideas and critique are built here
from the task and the images, marked `"fallback"` in the response: the endpoint
never fails because the model rambled.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from common.contracts.creative import Idea, IdeateRequest, IdeateResponse
from common.errors import ServiceError
from creative_svc.captions import CLASS_NAMES
from creative_svc.imaging import GenerationJob, ImageStudio, b64, random_seed
from creative_svc.llm import ChatModel
from creative_svc.styles import COLOURS

__all__ = [
    "IdeaDraft",
    "Ideator",
    "fallback_ideas",
    "ideas_schema",
    "json_ideas_prompt",
    "parse_ideas",
    "parse_json_ideas",
]

log = logging.getLogger(__name__)

_LABELS = {
    "idea": "description",
    "description": "description",
    "concept": "description",
    "visual": "visual_concept",
    "visual concept": "visual_concept",
    "image": "visual_concept",
    "picture": "visual_concept",
    "why": "why",
    "why it is new": "why",
    "novelty": "why",
    "reason": "why",
}
_LABELLED = re.compile(
    r"^\s*(?:[-*#\d.)\s]*)\**\s*(" + "|".join(sorted(_LABELS, key=len, reverse=True)) + r")"
    r"\s*\**\s*[:\-]\s*(.+)$",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.{8,})$")
_FALLBACK_COLOURS = ("red", "pastel blue", "black", "green", "yellow")
# Tokens per idea the JSON answer needs (two sentences of at most 120 characters, a
# visual, the keys): the ideation call's max_tokens grows with n so no answer is cut.
_TOKENS_PER_IDEA = 90
_SENTENCE = r"^[A-Z][A-Za-z0-9 ,;:'()&/-]{6,100}[.!]$"


@dataclass
class IdeaDraft:
    description: str
    visual_concept: str
    why: str


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "")).strip(" \"'*")


def parse_ideas(text: str, n: int) -> list[IdeaDraft]:
    """Ideas in the model's answer: `Idea:/Visual:/Why:` lines, else numbered items."""
    drafts: list[dict[str, str]] = []
    for line in text.splitlines():
        match = _LABELLED.match(line)
        if not match:
            continue
        field, value = _LABELS[match.group(1).lower()], _clean(match.group(2))
        if not value:
            continue
        # A field seen twice starts the next idea.
        if not drafts or field in drafts[-1]:
            drafts.append({})
        drafts[-1][field] = value
    ideas = [
        IdeaDraft(
            d.get("description") or d.get("visual_concept", ""),
            d.get("visual_concept") or d.get("description", ""),
            d.get("why", ""),
        )
        for d in drafts
        if d.get("description") or d.get("visual_concept")
    ]
    if not ideas:
        numbered = [_clean(m.group(1)) for m in map(_NUMBERED.match, text.splitlines()) if m]
        ideas = [IdeaDraft(item, item, "") for item in numbered]
    return ideas[:n]


def ideas_schema(garments: list[str]) -> dict[str, Any]:
    """OpenAI `response_format` for one drawable idea per garment, in that order.

    moe_svc decodes under this grammar, so the answer is len(garments) complete
    ideas, the i-th `visual` "a <colour> <garments[i]>" with a colour the styles
    know: every idea draws a different garment the image models were trained on.
    """
    colours = "|".join(COLOURS)
    # One plain sentence: no control characters or escapes (which a small model fills
    # a free string with), ended by the model rather than cut at a length limit.
    sentence = {"type": "string", "pattern": _SENTENCE}
    ideas = [
        {
            "type": "object",
            "properties": {
                "idea": sentence,
                "visual": {"type": "string", "pattern": f"^an? ({colours}) {re.escape(garment)}$"},
                "why": sentence,
            },
            "required": ["idea", "visual", "why"],
            "additionalProperties": False,
        }
        for garment in garments
    ]
    n = len(garments)
    array = {"type": "array", "prefixItems": ideas, "items": False, "minItems": n, "maxItems": n}
    schema = {
        "type": "object",
        "properties": {"ideas": array},
        "required": ["ideas"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "ideas", "strict": True, "schema": schema},
    }


def parse_json_ideas(text: str, n: int) -> list[IdeaDraft]:
    """The ideas of a JSON answer to `json_ideas_prompt`; [] when it is not one."""
    try:
        items = json.loads(text)["ideas"]
    except (ValueError, TypeError, KeyError):
        return []
    if not isinstance(items, list):
        return []
    drafts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        fields = [_clean(str(item.get(k) or "")) for k in ("idea", "visual", "why")]
        if fields[0] and fields[1]:
            drafts.append(IdeaDraft(*fields))
    return drafts[:n]


def fallback_ideas(task: str, classes: list[str], n: int) -> list[IdeaDraft]:
    """n ideas made here: the garments closest to the task, each in its own colour."""
    ideas = []
    for i in range(n):
        garment = classes[i % len(classes)]
        colour = _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)]
        ideas.append(
            IdeaDraft(
                description=f"A {colour} {garment} designed for: {task}",
                visual_concept=f"a {colour} {garment}",
                why=f"It answers the task with a {garment} in an unexpected {colour} palette.",
            )
        )
    return ideas


def ideas_prompt(task: str, n: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a creative fashion designer."},
        {
            "role": "user",
            "content": (
                f"Task: {task}\nGive {n} new ideas. For each idea write exactly three lines:\n"
                "Idea: <one sentence>\nVisual: <one piece of clothing with a colour, "
                "for example: a red dress>\nWhy: <why it is new>"
            ),
        },
    ]


def json_ideas_prompt(task: str, garments: list[str]) -> list[dict[str, str]]:
    pieces = ", ".join(garments)
    return [
        {"role": "system", "content": "You are a creative fashion designer."},
        {
            "role": "user",
            "content": (
                f"Task: {task}\nGive {len(garments)} new ideas, one for each of: {pieces}. "
                'Answer as JSON: {"ideas": [{"idea": "<one sentence>", "visual": "<a colour '
                'and the piece, for example: a red dress>", "why": "<why it is new>"}]}'
            ),
        },
    ]


def critique_prompt(task: str, ideas: list[IdeaDraft], readings: list[str]) -> list[dict[str, str]]:
    listing = "\n".join(
        f"{i + 1}. {idea.description} (picture: {reading})"
        for i, (idea, reading) in enumerate(zip(ideas, readings, strict=True))
    )
    return [
        {"role": "system", "content": "You are a helpful design critic."},
        {
            "role": "user",
            "content": (
                f"Task: {task}\nIdeas:\n{listing}\n"
                "In two or three sentences, say which idea is best and suggest one improvement."
            ),
        },
    ]


def fallback_critique(ideas: list[Idea]) -> str:
    garments = [idea.prompt_reading.nearest_class for idea in ideas]
    parts = [f"{len(ideas)} idea(s), drawn as: {', '.join(garments)}."]
    if len(set(garments)) < len(garments):
        parts.append("Several ideas land on the same garment: vary the garments for a wider set.")
    outside = [str(i + 1) for i, idea in enumerate(ideas) if idea.note]
    if outside:
        parts.append(
            f"Idea(s) {', '.join(outside)} ask for something the image model does not know "
            f"(it knows: {', '.join(CLASS_NAMES)}); recast them as one of those garments."
        )
    parts.append("Suggestion: give each idea a distinct colour and tone so the pictures differ.")
    return " ".join(parts)


class Ideator:
    def __init__(
        self,
        model: ChatModel,
        studio: ImageStudio,
        *,
        steps: int,
        guidance_scale: float,
        max_tokens: int,
        temperature: float,
        constrained: bool = True,
    ) -> None:
        self.model = model
        self.studio = studio
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.constrained = constrained

    async def _ask(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> str:
        """The model's answer, or "" when moe_svc fails: the caller falls back."""
        try:
            completion = await self.model.complete(
                messages,
                max_tokens=max_tokens,
                temperature=self.temperature,
                response_format=response_format,
            )
            return completion.text
        except ServiceError as exc:
            log.warning("moe_svc call failed, falling back: %s", exc.message)
            return ""

    async def draft(self, task: str, n: int) -> list[IdeaDraft]:
        """Up to n drawable ideas from the model (fewer when its answers were unusable).

        Constrained (the default): one call under `ideas_schema` for the n garments
        nearest the task, whose grammar makes the answer n complete ideas with
        drawable visuals, one garment each. A server that refuses or ignores the
        schema gets the labelled-lines prompt as well, parsed as text.
        """
        drafts: list[IdeaDraft] = []
        if self.constrained:
            garments = self.studio.encoder.ranked_classes(task)[:n]
            answer = await self._ask(
                json_ideas_prompt(task, garments),
                max(self.max_tokens, _TOKENS_PER_IDEA * n),
                ideas_schema(garments),
            )
            drafts = [d for d in parse_json_ideas(answer, n) if self._drawable(d)]
        if len(drafts) < n:
            answer = await self._ask(ideas_prompt(task, n), self.max_tokens)
            more = [d for d in parse_ideas(answer, n) if self._drawable(d)]
            drafts = drafts if len(drafts) >= len(more) else more
        return drafts

    def _drawable(self, draft: IdeaDraft) -> bool:
        try:
            self.studio.read_prompt(draft.visual_concept)
        except ServiceError:
            return False
        return True

    async def ideate(self, request: IdeateRequest) -> IdeateResponse:
        seed = request.seed if request.seed is not None else random_seed()
        drafts = await self.draft(request.task, request.n)
        ideas_source = "model" if len(drafts) == request.n else "fallback"
        if len(drafts) < request.n:
            task_class = self.studio.encoder.encode(request.task).nearest_class
            others = [c for c in CLASS_NAMES if c != task_class]
            drafts += fallback_ideas(request.task, [task_class, *others], request.n)[len(drafts) :]
        ideas: list[Idea] = []
        for i, draft in enumerate(drafts):
            job = GenerationJob(
                prompt=draft.visual_concept,
                n=1,
                size=int(request.size.split("x")[0]),
                model=request.model,
                steps=self.steps,
                guidance_scale=self.guidance_scale,
                sampler="ddim",
                seed=seed + 1000 * i,
            )
            result = await to_thread.run_sync(self.studio.generate, job)
            ideas.append(
                Idea(
                    description=draft.description,
                    visual_concept=draft.visual_concept,
                    why=draft.why or "(the model gave no reason)",
                    image=b64(result.pngs[0]),
                    prompt_reading=result.reading,
                    note=result.note,
                )
            )
        readings = [f"{i.prompt_reading.style} {i.prompt_reading.nearest_class}" for i in ideas]
        critique = _clean(
            await self._ask(critique_prompt(request.task, drafts, readings), self.max_tokens)
        )
        critique_source = "model" if len(critique) >= 20 else "fallback"
        if critique_source == "fallback":
            critique = fallback_critique(ideas)
        return IdeateResponse(
            ideas=ideas,
            critique=critique,
            ideas_source=ideas_source,
            critique_source=critique_source,
            seed=seed,
        )
