"""CASIA-Net and its interpretable head: shapes, registry contract, peak masking."""

from __future__ import annotations

import pytest
import torch

from scout_exp.models import create_model, model_info, split_classifier
from scout_exp.models.casianet import CASIANET_INPUT, PeakMask


@pytest.fixture(scope="module")
def interp_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("casianet_interp", num_classes=7).eval()


def test_base_shapes_and_stage_sizes() -> None:
    torch.manual_seed(0)
    model = create_model("casianet", num_classes=5).eval()
    x = torch.randn(2, 3, 96, 96)
    sizes = []
    h = x
    for s in range(5):
        h = getattr(model, f"stage{s}")(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(64, 96, 96), (128, 48, 48), (192, 24, 24), (256, 12, 12), (320, 6, 6)]
    assert isinstance(model.stage4[-1].act, torch.nn.Identity)  # last BN without ELU
    assert model(x).shape == (2, 5)
    assert dict(model.named_modules())[model_info("casianet").target_layer] is model.stage4
    trunk, fc = split_classifier(model)
    assert fc.in_features == 320 and trunk(x).shape == (2, 320)


def test_interp_shapes_and_contract(interp_model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 96, 96)
    out = interp_model.forward_maps(x)
    assert out.logits.shape == (2, 7)
    assert out.feature.shape == (2, 320)
    assert out.masked_map.shape == out.raw_map.shape == (2, 320, 24, 24)
    assert interp_model.filter_weight.shape == (320, 576, 3, 3)
    torch.testing.assert_close(out.feature, out.masked_map.mean(dim=(2, 3)))
    torch.testing.assert_close(interp_model(x), out.logits)
    # exactly 24 responses survive per sample and filter, each equal to the raw response
    kept = out.masked_map != 0
    assert (kept.flatten(2).sum(-1) == 24).all()
    torch.testing.assert_close(out.masked_map[kept], out.raw_map[kept])
    assert CASIANET_INPUT.size == 96 and tuple(CASIANET_INPUT.mean) == (0.5, 0.5, 0.5)


def test_hypercolumn_groups_are_unit_norm(interp_model: torch.nn.Module) -> None:
    hc = interp_model.hypercolumn(torch.randn(1, 3, 96, 96))
    assert hc.shape == (1, 576, 24, 24)
    for g in range(3):
        norms = hc[:, 192 * g : 192 * (g + 1)].norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_peak_mask_keeps_top_abs_with_sign() -> None:
    torch.manual_seed(1)
    m = torch.randn(3, 4, 5, 5)
    out = PeakMask(6)(m)
    for b in range(3):
        for c in range(4):
            flat = m[b, c].flatten()
            expected = torch.zeros_like(flat)
            top = sorted(range(25), key=lambda i: -abs(float(flat[i])))[:6]
            expected[top] = flat[top]
            torch.testing.assert_close(out[b, c].flatten(), expected)


def test_peak_mask_ties_keep_exactly_k_earliest() -> None:
    m = torch.full((1, 2, 3, 3), -2.0)
    m[0, 1, 2, 2] = 5.0
    out = PeakMask(4)(m)
    assert ((out != 0).flatten(2).sum(-1) == 4).all()
    assert torch.equal(out[0, 0].flatten()[:4], torch.full((4,), -2.0))  # first four in row-major order
    assert out[0, 1, 2, 2] == 5.0 and torch.equal(out[0, 1].flatten()[:3], torch.full((3,), -2.0))


def test_peak_mask_gradient_only_through_kept() -> None:
    m = torch.randn(1, 1, 4, 4, requires_grad=True)
    PeakMask(3)(m).sum().backward()
    kept = torch.zeros(16)
    kept[m.detach().abs().flatten().argsort(descending=True)[:3]] = 1
    assert torch.equal(m.grad.flatten(), kept)


def test_training_step_backpropagates() -> None:
    from scout_exp.interp.losses import interp_total_loss
    from scout_exp.interp.occlusion import REFERENCE_LANDMARKS_110, occlude_with_landmarks

    torch.manual_seed(0)
    model = create_model("casianet_interp", num_classes=4).train()
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    x_occ, masks = occlude_with_landmarks(x, (REFERENCE_LANDMARKS_110 - 7).expand(2, 5, 2), position=(30, 40))
    assert masks[0].sum() == 32 * 12
    clean, occ = model.forward_maps(x), model.forward_maps(x_occ)
    total, terms = interp_total_loss(clean, torch.tensor([1, 3]), model.filter_weight, occ, model.classify)
    assert torch.isfinite(total) and len(terms) == 6
    total.backward()
    assert model.map_conv.weight.grad.abs().sum() > 0 and model.stage0[0].conv.weight.grad.abs().sum() > 0
