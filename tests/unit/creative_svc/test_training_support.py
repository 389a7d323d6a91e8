"""The training scripts' resumable loop over batches."""

from __future__ import annotations

from creative_svc.training_support import ResumableBatches


def _run(step: int, total: int, saves: list[int]) -> tuple[ResumableBatches, list[list[int]]]:
    loop = ResumableBatches(
        10,
        3,
        total,
        step=step,
        seconds=0.0,
        max_minutes=None,
        save_every=2,
        save=lambda: saves.append(loop.step),
        desc="test",
    )
    return loop, [idx.tolist() for idx in loop]


def test_a_resumed_run_continues_with_the_batches_it_would_have_had() -> None:
    saves: list[int] = []
    whole, batches = _run(0, 7, saves)  # 3 batches an epoch: crosses two epoch boundaries
    assert whole.step == 7 and len(batches) == 7
    assert saves == [2, 4, 6, 7]  # every 2 steps, and at the end
    first_epoch = sorted(i for batch in batches[:3] for i in batch)
    assert len(set(first_epoch)) == 9  # one permutation per epoch: no image twice in it
    assert batches[3] != batches[0]  # the next epoch is shuffled afresh

    resumed, rest = _run(4, 7, [])
    assert rest == batches[4:] and resumed.step == 7


def test_the_deadline_stops_the_run_and_saves() -> None:
    saves: list[int] = []
    loop = ResumableBatches(
        10, 3, 100, step=0, seconds=0.0, max_minutes=0.0, save_every=50,
        save=lambda: saves.append(loop.step), desc="test",
    )  # fmt: skip
    assert list(loop) == [] and saves == [0]
