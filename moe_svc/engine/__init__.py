"""The generation engine: continuous batching, sampling, incremental detokenization."""

from moe_svc.engine.detokenizer import IncrementalDetokenizer
from moe_svc.engine.engine import Engine, EngineConfig, QueueFull
from moe_svc.engine.metrics import EngineMetrics
from moe_svc.engine.requests import (
    Delta,
    GenerationRequest,
    SampledToken,
    SamplingParams,
    TokenConstraint,
)
from moe_svc.engine.routing import RoutingRecorder, balance

__all__ = [
    "Delta",
    "Engine",
    "EngineConfig",
    "EngineMetrics",
    "GenerationRequest",
    "IncrementalDetokenizer",
    "QueueFull",
    "RoutingRecorder",
    "SampledToken",
    "SamplingParams",
    "TokenConstraint",
    "balance",
]
