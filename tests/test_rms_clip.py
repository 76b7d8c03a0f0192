"""Filter RMS clipping (§3): after a step no conv filter exceeds the radius; filters under it are untouched."""

import torch

from zfnet.models import build
from zfnet.training.rms_clip import rms_clip_


def test_clips_only_filters_above_radius():
    model = build("zfnet", 10, width=0.125, input_size=64)
    conv = model.weight_layer("conv1")
    with torch.no_grad():
        conv.weight[:4] *= 100  # 4 filters far above 0.1
    before = {n: m.weight.clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    rms_before = {n: w.pow(2).mean(dim=(1, 2, 3)).sqrt() for n, w in before.items()}
    clipped = rms_clip_(model, 0.1)
    assert clipped == sum(int((r > 0.1).sum()) for r in rms_before.values()) >= 4
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            rms = m.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
            assert torch.all(rms <= 0.1 + 1e-6)
            over = rms_before[name] > 0.1
            assert torch.allclose(rms[over], torch.full_like(rms[over], 0.1))
            assert torch.equal(m.weight[~over], before[name][~over])  # untouched, bit for bit
            # direction kept: clipping is a rescale
            cos = torch.nn.functional.cosine_similarity(m.weight[over].flatten(1), before[name][over].flatten(1))
            assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)


def test_disabled_when_radius_is_none():
    model = build("zfnet", 10, width=0.125, input_size=64)
    with torch.no_grad():
        model.weight_layer("conv1").weight.mul_(100)
    w = model.weight_layer("conv1").weight.clone()
    assert rms_clip_(model, None) == 0
    assert torch.equal(model.weight_layer("conv1").weight, w)
