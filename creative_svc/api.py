"""creative_svc's routes: OpenAI image generations and the ideation pipeline."""

from __future__ import annotations

import time

from anyio import to_thread
from fastapi import APIRouter

from common.contracts.creative import (
    IdeateRequest,
    IdeateResponse,
    ImageData,
    ImageGenerationRequest,
    ImageGenerationResponse,
)
from creative_svc.deps import IdeatorDep, SettingsDep, StudioDep
from creative_svc.imaging import GenerationJob, b64, random_seed

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/images/generations", response_model=ImageGenerationResponse)
async def generate_images(
    body: ImageGenerationRequest, studio: StudioDep, settings: SettingsDep
) -> ImageGenerationResponse:
    diffusion = body.model == "diffusion"
    job = GenerationJob(
        prompt=body.prompt,
        n=body.n,
        size=int(body.size.split("x")[0]),
        model=body.model,
        steps=body.steps or settings.default_steps,
        guidance_scale=(
            body.guidance_scale
            if body.guidance_scale is not None
            else settings.default_guidance_scale
        ),
        sampler=body.sampler,
        seed=body.seed if body.seed is not None else random_seed(),
    )
    result = await to_thread.run_sync(studio.generate, job)
    return ImageGenerationResponse(
        created=int(time.time()),
        data=[ImageData(b64_json=b64(png), revised_prompt=body.prompt) for png in result.pngs],
        model=body.model,
        seed=job.seed,
        steps=job.steps if diffusion else None,
        guidance_scale=job.guidance_scale if diffusion else None,
        sampler=job.sampler if diffusion else None,
        prompt_reading=result.reading,
        note=result.note,
    )


@router.post("/v1/creative/ideate", response_model=IdeateResponse)
async def ideate(body: IdeateRequest, ideator: IdeatorDep) -> IdeateResponse:
    return await ideator.ideate(body)
