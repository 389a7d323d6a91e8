"""Ideation -> visuals -> critique: moe_svc proposes ideas, we draw them, moe_svc critiques.

The default moe_svc model is a 135M-parameter chat model: it follows a format
only some of the time. So the prompts are short and plain, the parser takes
what it can (labelled lines, numbered items), and when nothing usable comes
back (or moe_svc is down) the ideas and critique are built here from the task
and the images, marked `"fallback"` in the response: the endpoint never fails
because the model rambled.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from anyio import to_thread

from common.contracts.creative import Idea, IdeateRequest, IdeateResponse
from common.errors import ServiceError
from creative_svc.captions import CLASS_NAMES
from creative_svc.imaging import GenerationJob, ImageStudio, b64, random_seed
from creative_svc.llm import ChatModel

__all__ = ["IdeaDraft", "Ideator", "fallback_ideas", "parse_ideas"]

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
    ) -> None:
        self.model = model
        self.studio = studio
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def _ask(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """The model's answer, or "" when moe_svc fails: the caller falls back."""
        try:
            completion = await self.model.complete(
                messages, max_tokens=max_tokens, temperature=self.temperature
            )
            return completion.text
        except ServiceError as exc:
            log.warning("moe_svc call failed, falling back: %s", exc.message)
            return ""

    def _drawable(self, draft: IdeaDraft) -> bool:
        try:
            self.studio.read_prompt(draft.visual_concept)
        except ServiceError:
            return False
        return True

    async def ideate(self, request: IdeateRequest) -> IdeateResponse:
        seed = request.seed if request.seed is not None else random_seed()
        answer = await self._ask(ideas_prompt(request.task, request.n), self.max_tokens)
        drafts = [d for d in parse_ideas(answer, request.n) if self._drawable(d)]
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
