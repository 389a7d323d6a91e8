"""The caption UNet's conditioning: the "no caption" of guidance, and saved configs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from creative_svc.diffusion_model import EMBED_DIM, CaptionUNet, DiffusionConfig
from creative_svc.generators import DiffusionGenerator

SMALL = DiffusionConfig(block_out_channels=(8, 16, 16), norm_num_groups=4, attention_head_dim=8)


def _model(cfg: DiffusionConfig = SMALL) -> CaptionUNet:
    torch.manual_seed(0)
    model = CaptionUNet(cfg).eval()
    bank = torch.nn.functional.normalize(torch.randn(cfg.n_classes, 4, EMBED_DIM), dim=-1)
    model.set_references(bank)
    return model


def test_no_caption_has_equal_affinity_to_every_class_whatever_it_learned() -> None:
    model = _model()
    with torch.no_grad():
        # A learned vector that points at class 3's reference: the affinity must not follow.
        model.null_embedding.copy_(model.class_refs[3] * 5)
    affinity = model.null_features()[EMBED_DIM:]
    torch.testing.assert_close(affinity, torch.full((SMALL.n_classes,), 0.1))


def test_dropped_rows_ignore_their_caption() -> None:
    model = _model()
    x = torch.randn(1, 1, 28, 28).expand(2, -1, -1, -1)
    t = torch.tensor([500, 500])
    captions = torch.nn.functional.normalize(torch.randn(2, EMBED_DIM), dim=-1)
    drop = torch.tensor([True, True])
    with torch.no_grad():
        dropped = model(x, t, captions, drop)
        kept = model(x, t, captions)
    torch.testing.assert_close(dropped[0], dropped[1])
    assert not torch.allclose(kept[0], kept[1])


def test_saved_model_loads_and_configs_without_newer_fields_keep_their_behaviour(
    tmp_path: Path,
) -> None:
    model = _model()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 900])
    caption = torch.nn.functional.normalize(torch.randn(2, EMBED_DIM), dim=-1)
    model.save(tmp_path / "new")
    loaded = CaptionUNet.load(tmp_path / "new")
    assert loaded.cfg == SMALL
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, caption), model(x, t, caption), atol=1e-2, rtol=0)

    # A config written before `resnet_time_scale_shift` and `null_condition` existed.
    old_cfg = DiffusionConfig(
        block_out_channels=(8, 16, 16),
        norm_num_groups=4,
        attention_head_dim=8,
        resnet_time_scale_shift="default",
        null_condition="embedding",
    )
    _model(old_cfg).save(tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    del raw["resnet_time_scale_shift"], raw["null_condition"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(raw))
    assert CaptionUNet.load(tmp_path / "old").cfg == old_cfg


def test_guidance_applies_only_within_its_interval() -> None:
    model = _model()
    caption = torch.nn.functional.normalize(torch.randn(EMBED_DIM), dim=0).numpy()

    def images(scale: float, max_t: int | None) -> torch.Tensor:
        generator = DiffusionGenerator(model, guidance_max_t=max_t)
        return torch.from_numpy(generator.generate(caption, 2, 5, steps=4, guidance_scale=scale))

    plain = images(1.0, None)
    # No timestep is at or below -1: every step is the plain conditional prediction.
    torch.testing.assert_close(images(4.0, -1), plain)
    everywhere, limited = images(4.0, None), images(4.0, 300)
    assert not torch.allclose(everywhere, plain) and not torch.allclose(limited, everywhere)
