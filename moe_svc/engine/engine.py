"""Continuous batching on one background thread.

Every step the engine (1) drops aborted requests, (2) admits waiting requests into
free KV-cache rows, prefilling them together (left-padded) in one forward, and (3)
decodes one token for every running row in a single forward. A request that
finishes leaves at once and its row goes to the next waiting one, so new requests
join a running batch at the next step instead of waiting for it to drain.

A request waits in the queue at most `max_queue_wait_s`: past it, the step sheds
it (out of the queue, no work done for it) with an estimate of when a retry would
be admitted, and the server answers 503 `overloaded` with `Retry-After`. A bound
on waiting, not on the queue's length alone: under load the queue stays full of
requests whose clients have long given up, and a deadline is what a client feels.
The estimate (`estimated_wait_s`) is the queue ahead times the recent time between
admissions; it only tells clients when to come back, it decides nothing.

Running requests occupy cache rows 0..n-1 with no gaps: when row i finishes, the
last row's keys and values move into it. Decoding then runs over exactly n rows
(a view of the cache), never over idle ones.

Torch releases the GIL in its kernels, so the asyncio server thread stays
responsive while this thread computes. Results go back through each request's
asyncio queue (`loop.call_soon_threadsafe`).

All of a model's work belongs on ONE thread (`run` on the thread that loaded it, as
moe_svc's app does): every thread that runs torch ops gets its own OpenMP team, and
with more OpenMP threads than cores libgomp stops spinning between parallel regions,
which measured 2x slower decoding on 2 cores (a futex wake per matrix product).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from moe_svc.engine.detokenizer import IncrementalDetokenizer, TokenDecoder
from moe_svc.engine.metrics import EngineMetrics
from moe_svc.engine.requests import Delta, FinishReason, GenerationRequest, SampledToken
from moe_svc.engine.routing import RoutingRecorder
from moe_svc.engine.sampler import sample_next_tokens
from moe_svc.modeling import CausalLM, KVCache

__all__ = ["Engine", "EngineConfig", "QueueFull"]

logger = logging.getLogger("moe_svc.engine")


# Admissions remembered for the wait estimate, and how far back they count.
_ADMISSIONS_KEPT = 64
_ADMISSION_WINDOW_S = 60.0
# The most Retry-After says: a stalled window must not send clients away for ages.
_MAX_RETRY_AFTER_S = 120.0


class QueueFull(Exception):
    """More requests wait than the queue holds; `retry_after_s` estimates when to retry."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class EngineConfig:
    max_batch_size: int = 8  # sequences decoding together (KV-cache rows)
    max_queue: int = 64  # requests waiting for a row before new ones are refused
    # seconds a request may wait for a row before it is shed (0: no deadline)
    max_queue_wait_s: float = 30.0
    max_context: int = 2048  # prompt plus output tokens of one sequence
    # prompt tokens prefilled per step while others decode: bounds their inter-token gap
    prefill_tokens_per_step: int = 512


class Engine:
    def __init__(
        self,
        model: CausalLM,
        tokenizer: TokenDecoder,
        config: EngineConfig,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.metrics = metrics
        self.cache: KVCache = model.new_cache(config.max_batch_size, config.max_context)
        self.routing: RoutingRecorder | None = None
        if model.config.is_moe:
            self.routing = RoutingRecorder(
                model.config.num_hidden_layers, model.config.num_local_experts
            )
            model.expert_stats = self.routing
        self._clock = clock
        self._waiting: deque[GenerationRequest] = deque()
        self._admitted_at: deque[float] = deque(maxlen=_ADMISSIONS_KEPT)  # engine clock
        self._running: list[GenerationRequest] = []  # index = cache row
        self._prefilling: list[GenerationRequest] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0

    # ---- called from the server's event loop ----

    def warm_up(self) -> None:
        """One small prefill and decode step, so the first request pays no one-off costs."""
        rows = min(2, self.config.max_batch_size)
        with torch.inference_mode():
            self.model(torch.zeros(1, 4, dtype=torch.long), cache=self.cache.narrow(0, 1))
            self.model(torch.zeros(rows, 1, dtype=torch.long), cache=self.cache.narrow(0, rows))
        self.cache.reset()
        if self.routing is not None:
            self.routing.reset()

    def start(self) -> None:
        """Run the engine on a thread of its own (see `run` for the one-thread way)."""
        self._thread = threading.Thread(target=self.run, name="moe-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask `run` to return; joins the engine's thread when `start` made one."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; raises QueueFull when `max_queue` requests already wait."""
        limit = self.config.max_context
        if len(request.prompt_ids) + 1 > limit:
            raise ValueError(f"prompt of {len(request.prompt_ids)} tokens exceeds {limit}")
        with self._lock:
            now = self._clock()
            if len(self._waiting) >= self.config.max_queue:
                if self.metrics:
                    self.metrics.shed.inc()
                wait = self.estimated_wait_s(len(self._waiting) + 1, now)
                raise QueueFull(f"{len(self._waiting)} requests are waiting", wait)
            request.queued_at = now
            self._waiting.append(request)
            if self.metrics:
                self.metrics.waiting.set(len(self._waiting))
        self._wake.set()

    def abort(self, request: GenerationRequest) -> None:
        """Stop generating for a request (client gone); its row frees at the next step."""
        if request.finished or request.aborted:
            return
        request.aborted = True
        if self.metrics:
            self.metrics.aborted.inc()
        with self._lock:
            if request in self._waiting:
                self._waiting.remove(request)
                request.finished = True
        self._wake.set()

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def estimated_wait_s(self, position: int, now: float) -> float:
        """How long the request at `position` (1: next) in the queue would wait for a row.

        The recent time between admissions (over the last minute, up to now, so a
        stalled engine reads as slow) times `position`; with no admission in that
        minute, the queue's deadline. Between 1 s and two minutes.
        """
        while self._admitted_at and now - self._admitted_at[0] > _ADMISSION_WINDOW_S:
            self._admitted_at.popleft()
        if self._admitted_at:
            per_admission = (now - self._admitted_at[0]) / len(self._admitted_at)
            wait = position * per_admission
        else:
            wait = self.config.max_queue_wait_s
        return min(_MAX_RETRY_AFTER_S, max(1.0, wait))

    # ---- the engine thread ----

    def run(self) -> None:
        """Serve on the calling thread until `stop` (the thread that loaded the model)."""
        with torch.inference_mode():
            while not self._stopping:
                if not self._running and not self._waiting:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                try:
                    self.step()
                except Exception:  # keep serving: fail what was running, start clean
                    logger.exception("engine step failed")
                    self._fail_all("internal error in the generation engine")
            # stopped (the model unloaded): what still runs or waits ends with an error
            message = "the model stopped serving (it was unloaded); retry"
            with self._lock:
                waiting, self._waiting = list(self._waiting), deque()
            for request in waiting:
                request.finished = True
                request.post(Delta("", [], "abort", error=message))
            if self._running or self._prefilling:
                self._fail_all(message)

    def step(self) -> None:
        """One scheduling step: drop aborted, shed overdue, admit waiting, decode running."""
        self._drop_aborted()
        self._shed_overdue()
        self._admit()
        if self._running:
            self._decode()
        self.steps += 1
        if self.metrics:
            self.metrics.batch_size.set(len(self._running))
            self.metrics.waiting.set(len(self._waiting))

    def _drop_aborted(self) -> None:
        gone = [i for i, r in enumerate(self._running) if r.aborted]
        for request in (self._running[i] for i in gone):
            self._finish(request, "abort", "")
        self._remove_rows(gone)

    def _shed_overdue(self) -> None:
        """Take out of the queue every request that waited past `max_queue_wait_s`."""
        deadline = self.config.max_queue_wait_s
        if deadline <= 0:
            return
        with self._lock:
            now = self._clock()
            overdue = [r for r in self._waiting if now - r.queued_at > deadline]
            for request in overdue:
                self._waiting.remove(request)
            # a retry joins the back of what is left
            retry_after = self.estimated_wait_s(len(self._waiting) + 1, now) if overdue else 0.0
        for request in overdue:
            request.finished = True
            if request.aborted:
                continue
            message = (
                f"The server is overloaded: the request waited {now - request.queued_at:.1f} s "
                f"for a slot (limit {deadline:g} s). Retry later."
            )
            request.post(Delta("", [], "abort", error=message, retry_after_s=retry_after))
            if self.metrics:
                self.metrics.shed.inc()

    def _admit(self) -> None:
        """Prefill waiting requests into free rows, together in one forward.

        One forward reads the weights once for all of them: 8 prompts of 30 tokens
        took 438 ms together against 8 x 126 ms one by one. Prompts are left-padded
        to the longest; padded tokens count against `prefill_tokens_per_step` (the
        bound on how long the running requests wait), except that the first waiting
        request is always taken.
        """
        group: list[GenerationRequest] = []
        longest = 0
        free = self.config.max_batch_size - len(self._running)
        with self._lock:
            while self._waiting and len(group) < free:
                request = self._waiting[0]
                if request.aborted:
                    self._waiting.popleft()
                    request.finished = True
                    continue
                width = max(longest, len(request.prompt_ids))
                if group and width * (len(group) + 1) > self.config.prefill_tokens_per_step:
                    break  # later prompts wait for the next step
                self._waiting.popleft()
                group.append(request)
                longest = width
            now = self._clock()
            self._admitted_at.extend(now for _ in group)
        if group:
            self._prefilling = group
            self._prefill(group)
            self._prefilling = []

    def _prefill(self, group: list[GenerationRequest]) -> None:
        first = len(self._running)
        rows = len(group)
        self.cache.reset(list(range(first, first + rows)))
        for request in group:
            seed = request.params.seed
            if not request.params.greedy:
                request.generator = torch.Generator().manual_seed(
                    seed if seed is not None else random.getrandbits(63)
                )
            request.detokenizer = IncrementalDetokenizer(self.tokenizer, request.params.stop)
        longest = max(len(r.prompt_ids) for r in group)
        ids = torch.zeros(rows, longest, dtype=torch.long)
        real = torch.zeros(rows, longest, dtype=torch.long)
        for i, request in enumerate(group):  # left padding: every row ends at its last token
            n = len(request.prompt_ids)
            ids[i, longest - n :] = torch.tensor(request.prompt_ids, dtype=torch.long)
            real[i, longest - n :] = 1
        padded = any(len(r.prompt_ids) != longest for r in group)
        record = self.routing is not None and any(r.record_experts for r in group)
        if record:
            assert self.routing is not None
            self.routing.capture()
        cache = self.cache.narrow(first, rows)
        embeds = self._spliced_embeddings(group, ids)
        logits = self.model(
            ids, real if padded else None, cache=cache, logits_to_keep=1, inputs_embeds=embeds
        )[:, -1]
        if padded:
            cache.drop_padding()  # slots are context: a padded row must not run out early
        if record:
            assert self.routing is not None
            counts = self.routing.per_sequence(rows, real.bool())
            for i, request in enumerate(group):
                if request.record_experts:
                    request.expert_counts = counts[i]
        if self.metrics:
            self.metrics.prompt_tokens.inc(sum(len(r.prompt_ids) for r in group))
        tokens = sample_next_tokens(logits, group)
        self._running.extend(group)
        done = [first + i for i, r in enumerate(group) if self._emit(r, tokens[i])]
        self._remove_rows(done)

    def _spliced_embeddings(
        self, group: list[GenerationRequest], ids: torch.Tensor
    ) -> torch.Tensor | None:
        """The group's input embeddings with its images' vectors in place (None: no image)."""
        if not any(r.image_embeds for r in group):
            return None
        embeds: torch.Tensor = self.model.model.embed_tokens(ids)
        longest = ids.shape[1]
        for row, request in enumerate(group):
            pad = longest - len(request.prompt_ids)  # left padding shifts every position
            for start, vectors in request.image_embeds:
                at = pad + start
                embeds[row, at : at + len(vectors)] = vectors.to(embeds.dtype)
        return embeds

    def _decode(self) -> None:
        n = len(self._running)
        ids = torch.tensor([[r.output_ids[-1]] for r in self._running], dtype=torch.long)
        record = self.routing is not None and any(r.record_experts for r in self._running)
        if record:
            assert self.routing is not None
            self.routing.capture()
        logits = self.model(ids, cache=self.cache.narrow(0, n), logits_to_keep=1)[:, -1]
        if record:
            assert self.routing is not None
            counts = self.routing.per_sequence(n)
            for row, request in enumerate(self._running):
                if request.expert_counts is not None:
                    request.expert_counts += counts[row]
        tokens = sample_next_tokens(logits, self._running)
        done = [row for row, r in enumerate(self._running) if self._emit(r, tokens[row])]
        self._remove_rows(done)

    def _emit(self, request: GenerationRequest, token: int) -> bool:
        """Record a generated token and post its text; True when the request is done."""
        now = time.perf_counter()
        if self.metrics:
            self.metrics.generated.inc()
            if request.first_token_at is None:
                self.metrics.ttft.observe(now - request.arrival)
            elif request.last_token_at is not None:
                self.metrics.inter_token.observe(now - request.last_token_at)
        if request.first_token_at is None:
            request.first_token_at = now
        request.last_token_at = now
        request.output_ids.append(token)
        params = request.params
        detok = request.detokenizer
        assert detok is not None
        finish: FinishReason | None = None
        constraint = request.constraint
        if constraint is not None:
            constraint.accept(token)
        if token in params.stop_token_ids:
            if request.pending_logprobs:  # OpenAI lists no end-of-sequence token
                request.pending_logprobs.pop()
            text, finish = detok.flush(), "stop"
        else:
            text = detok.push(token)
            total = len(request.prompt_ids) + len(request.output_ids)
            if detok.stopped or (constraint is not None and constraint.done):
                finish = "stop"
            elif len(request.output_ids) >= params.max_tokens or total >= self.config.max_context:
                finish = "length"
            if finish is not None:
                text += detok.flush()
        if finish is not None:
            self._finish(request, finish, text)
            return True
        if text:
            request.post(Delta(text, [token], logprobs=_take_logprobs(request)))
        return False

    def _finish(self, request: GenerationRequest, reason: FinishReason, text: str) -> None:
        request.finished = True
        experts = None
        if request.expert_counts is not None:
            experts = request.expert_counts.tolist()
        request.post(
            Delta(
                text,
                request.output_ids[-1:],
                reason,
                prompt_tokens=len(request.prompt_ids),
                completion_tokens=len(request.output_ids),
                experts=experts,
                logprobs=_take_logprobs(request),
            )
        )
        if self.metrics:
            self.metrics.finished(reason)

    def _remove_rows(self, rows: list[int]) -> None:
        """Free cache rows, moving the last running rows into the gaps."""
        for row in sorted(rows, reverse=True):
            last = len(self._running) - 1
            if row != last:
                self._move_row(last, row)
                self._running[row] = self._running[last]
            self._running.pop()

    def _move_row(self, src: int, dst: int) -> None:
        cache = self.cache
        length = int(cache.lengths[src])
        for buffers in (cache.keys, cache.values):
            for buf in buffers:
                buf[dst, :, :length] = buf[src, :, :length]
        cache.lengths[dst] = cache.lengths[src]
        cache.positions[dst] = cache.positions[src]
        cache.valid[dst] = cache.valid[src]

    def _fail_all(self, message: str) -> None:
        failed = self._running + self._prefilling
        self._prefilling = []
        for request in failed:
            request.finished = True
            request.post(Delta("", [], "abort", error=message))
        self._running.clear()
        self.cache.reset()


def _take_logprobs(request: GenerationRequest) -> list[SampledToken] | None:
    """The logprobs of the tokens since the last delta (None when not asked for)."""
    if request.params.logprobs is None:
        return None
    taken, request.pending_logprobs = request.pending_logprobs, []
    return taken
