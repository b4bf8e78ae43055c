"""FGGB and CorrRISE, each published detail against a hand computation on a tiny model; CLI and leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from torch import nn

from scout_exp.attribution import attribution_class, create_attribution
from scout_exp.attribution.corrrise import CorrRISE, average_ranks, patch_masks, patch_origins, rank_correlation
from scout_exp.attribution.fggb import FGGB, gaussian_blur
from scout_exp.errors import UserError
from scout_exp.explain import verify_benchmark
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.explain.verification import VerificationExplainer
from scout_exp.io import save_image
from scout_exp.training.margin import MarginEmbedderModule
from tests.conftest import run_dir, run_entry
from tests.test_verification_margin import FACEPARTS, SPEC, _save

SIZE, DIM = 8, 6


class LinearEmbedder(nn.Module):
    """f(x) = W vec(x) on (B, 3, 8, 8) images: every gradient of the normalised embedding has a closed form."""

    def __init__(self, dim: int = DIM, seed: int = 0) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * SIZE * SIZE, dim, bias=False)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))


def _pair(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, SIZE, SIZE, generator=gen), torch.randn(2, 3, SIZE, SIZE, generator=gen)


def _unit(net: LinearEmbedder, x: torch.Tensor) -> np.ndarray:
    e = net(x).detach().double().numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _dimension_maps(net: LinearEmbedder, x: np.ndarray, normalise_first: bool = True) -> np.ndarray:
    """FGGB's per-dimension maps of one image by hand: (D, H, W).

    d(f / ||f||)/dx = (I - u u^T) W / ||f|| (the normalised embedding's Jacobian), or W itself for
    the raw embedding; then |.|, the mean over the 3 colour channels and each map's L2 norm."""
    w = net.proj.weight.detach().double().numpy()
    f = w @ x.reshape(-1)
    u = f / np.linalg.norm(f)
    jac = (np.eye(len(f)) - np.outer(u, u)) @ w / np.linalg.norm(f) if normalise_first else w
    g = np.abs(jac.reshape(len(f), 3, SIZE, SIZE)).mean(axis=1)
    return g / (np.linalg.norm(g.reshape(len(f), -1), axis=1)[:, None, None] + 1e-8)


def _hand_fggb(net: LinearEmbedder, probe: torch.Tensor, ref: torch.Tensor, theta: float) -> np.ndarray:
    """Signed FGGB maps (2, B, H, W) by hand: sum_k (u_k v_k - theta / D) g_k for both sides of every pair."""
    units = [_unit(net, probe), _unit(net, ref)]
    out = np.zeros((2, probe.shape[0], SIZE, SIZE))
    for side, (images, mine, theirs) in enumerate(((probe, units[0], units[1]), (ref, units[1], units[0]))):
        for b in range(images.shape[0]):
            weights = mine[b] * theirs[b] - theta / DIM
            out[side, b] = np.einsum("k,khw->hw", weights, _dimension_maps(net, images[b].double().numpy()))
    return out


def _signed(e) -> np.ndarray:  # noqa: ANN001 - a VerificationExplanation
    return (e.similar - e.different).double().numpy()


@pytest.mark.parametrize("theta", [-0.4, 0.0, 0.3, "median"])
def test_fggb_matches_a_hand_computation(theta: float | str) -> None:
    """S = sum_k (u_k v_k - theta / D) g_k, S+ similar, S- different (unblurred), against closed-form gradients."""
    net = LinearEmbedder().eval()
    probe, ref = _pair()
    if theta == "median":  # theta / D between the pair's products: both groups of dimensions are non-empty
        theta = float(np.median(_unit(net, probe)[0] * _unit(net, ref)[0])) * DIM
    e = VerificationExplainer(net, None, "fggb", threshold=theta, blur_kernel=0).explain(probe, ref)
    expected = _hand_fggb(net, probe, ref, float(theta))
    np.testing.assert_allclose(_signed(e), expected, atol=1e-6, rtol=1e-4)
    assert (e.similar >= 0).all() and (e.different >= 0).all() and (e.similar * e.different == 0).all()
    assert e.similar.shape == (2, 2, SIZE, SIZE)  # input resolution


def test_fggb_splits_dimensions_at_theta_over_d() -> None:
    """A dimension is similar iff u_k v_k > theta / D. Against itself (v = u: u_k v_k = u_k^2 >= 0), a
    negative theta makes every dimension similar: no different evidence at all; against its negative
    (v = -u for a linear embedder: u_k v_k = -u_k^2 <= 0) theta = 0 makes every one dissimilar: no
    similar evidence. In between, the maps move with theta / D per dimension, not theta."""
    net = LinearEmbedder().eval()
    probe, _ = _pair()

    def explain(theta: float, partner: torch.Tensor):  # noqa: ANN202 - a VerificationExplanation
        return VerificationExplainer(net, None, "fggb", threshold=theta, blur_kernel=0).explain(probe, partner)

    all_similar, all_dissimilar = explain(-0.1, probe.clone()), explain(0.0, -probe)
    assert all_similar.different.abs().max() == 0 and all_similar.similar.sum() > 0
    assert all_dissimilar.similar.abs().max() == 0 and all_dissimilar.different.sum() > 0
    theta, products = 0.2, _unit(net, probe) ** 2
    assert (products < theta / DIM).any() and (products > theta / DIM).any()  # both groups occur
    g_sum = np.stack([_dimension_maps(net, probe[b].double().numpy()).sum(0) for b in range(2)])
    shift = _signed(explain(theta, probe.clone())) - _signed(explain(0.0, probe.clone()))
    np.testing.assert_allclose(shift[0], -theta / DIM * g_sum, atol=1e-6, rtol=1e-4)
    split = _hand_fggb(net, probe, probe.clone(), theta)[0]
    similar_dims = products > theta / DIM
    for b in range(2):  # S+ - S- = sum over similar dims of |w| g - sum over dissimilar dims of |w| g
        maps = _dimension_maps(net, probe[b].double().numpy())
        w = np.abs(products[b] - theta / DIM)
        by_group = np.einsum("k,khw->hw", w * similar_dims[b], maps) - np.einsum(
            "k,khw->hw", w * ~similar_dims[b], maps
        )
        np.testing.assert_allclose(split[b], by_group, atol=1e-12)
        np.testing.assert_allclose(_signed(explain(theta, probe.clone()))[0, b], by_group, atol=1e-6, rtol=1e-4)


def test_fggb_differentiates_the_l2_normalised_embedding() -> None:
    """The gradients run through f / ||f||: the maps match the normalised embedding's Jacobian, not W."""
    net = LinearEmbedder().eval()
    probe, ref = _pair(2)
    e = VerificationExplainer(net, None, "fggb", blur_kernel=0).explain(probe, ref)
    weights = _unit(net, probe)[0] * _unit(net, ref)[0]
    x = probe[0].double().numpy()
    normalised = np.einsum("k,khw->hw", weights, _dimension_maps(net, x))
    raw = np.einsum("k,khw->hw", weights, _dimension_maps(net, x, normalise_first=False))
    np.testing.assert_allclose(_signed(e)[0, 0], normalised, atol=1e-6, rtol=1e-4)
    assert np.abs(raw - normalised).max() > 100 * np.abs(_signed(e)[0, 0] - normalised).max() + 1e-3


def test_fggb_batched_gradients_equal_one_dimension_at_a_time() -> None:
    """All D gradients in one batched backward give the maps of one backward per dimension."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 16)).eval()
    probe, ref = _pair(3)
    one = VerificationExplainer(net, None, "fggb", dimensions_per_pass=1).explain(probe, ref)
    many = VerificationExplainer(net, None, "fggb", dimensions_per_pass=16).explain(probe, ref)
    torch.testing.assert_close(one.similar, many.similar, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one.different, many.different, atol=1e-6, rtol=1e-5)


def test_fggb_falls_back_to_one_backward_per_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where an operator has no batching rule, the chunk's dimensions are back-propagated one by one."""
    net = LinearEmbedder().eval()
    probe, ref = _pair()
    batched = VerificationExplainer(net, None, "fggb", blur_kernel=0).explain(probe, ref)
    real = torch.autograd.grad

    def no_vmap(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    looped = VerificationExplainer(net, None, "fggb", blur_kernel=0).explain(probe, ref)
    torch.testing.assert_close(looped.similar, batched.similar)
    torch.testing.assert_close(looped.different, batched.different)
    constant = nn.Parameter(torch.randn(1, DIM))  # requires grad, but not through the image
    with pytest.raises(UserError, match="does not depend on the input image"):
        VerificationExplainer(lambda x: constant.expand(len(x), DIM) * 1.0, None, "fggb").explain(probe, ref)


def test_fggb_blur_is_the_reference_gaussian() -> None:
    """Each map blurred as the authors' code saves them: kernel 25 px, sigma 5 (OpenCV's Gaussian, reflected border)."""
    maps = torch.rand(2, 40, 36, generator=torch.Generator().manual_seed(4))
    ours = gaussian_blur(maps, 25, 5.0)
    for b in range(2):
        theirs = cv2.GaussianBlur(maps[b].numpy(), (25, 25), 5.0, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(ours[b].numpy(), theirs, atol=1e-5)
    net = LinearEmbedder().eval()
    probe, ref = _pair()
    raw = VerificationExplainer(net, None, "fggb", blur_kernel=0).explain(probe, ref)
    blurred = VerificationExplainer(net, None, "fggb", blur_kernel=5, blur_sigma=1.0).explain(probe, ref)
    torch.testing.assert_close(blurred.similar, gaussian_blur(raw.similar, 5, 1.0), atol=1e-6, rtol=1e-5)
    assert FGGB(net).describe() == "FGGB (threshold 0 on the cosine, blur 25 px, sigma 5)"


class NoGradient(nn.Module):
    """An embedder whose output carries no gradient, as an ONNX model run by onnxruntime."""

    def __init__(self) -> None:
        super().__init__()
        self.net = LinearEmbedder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.net(x).detach().numpy())


def test_fggb_bad_requests_are_one_line() -> None:
    probe, ref = _pair()
    with pytest.raises(UserError, match="gives no gradient .* use a black-box method: attribution=corrrise"):
        VerificationExplainer(NoGradient(), None, "fggb").explain(probe, ref)
    with pytest.raises(UserError, match="reads no layer; drop attribution.layer=proj"):
        VerificationExplainer(LinearEmbedder(), "proj", "fggb")
    with pytest.raises(UserError, match="threshold .* is a cosine in \\[-1, 1\\], got 2"):
        FGGB(LinearEmbedder(), threshold=2)
    with pytest.raises(UserError, match="blur_kernel .* odd"):
        FGGB(LinearEmbedder(), blur_kernel=24)
    with pytest.raises(UserError, match="dimensions_per_pass"):
        FGGB(LinearEmbedder(), dimensions_per_pass=0)
    with pytest.raises(UserError, match="has no option grid"):
        create_attribution("fggb", LinearEmbedder(), grid=3)
    with pytest.raises(UserError, match="explains face verification pairs only \\(mode=verify\\)"):
        ScoutExplainer(nn.Sequential(LinearEmbedder(), nn.Linear(DIM, 3)), "fggb").explain(probe)
    # a gradient-taking method that reads no layer is no black box: not offered as one
    with pytest.raises(UserError, match="use a black-box method: attribution=corrrise or attribution=occlusion or "):
        VerificationExplainer(lambda x: x.flatten(1), None, "gradxact")
    assert not attribution_class("fggb").reads_layer
    # a plain differentiable function is fine
    e = VerificationExplainer(lambda x: x.flatten(1)[:, :5] * 2, None, "fggb").explain(probe, ref)
    assert e.similar.shape == (2, 2, SIZE, SIZE)


# ---------------------------------------------------------------------------------------------- CorrRISE


def test_corrrise_is_spearman_per_pixel() -> None:
    """Each pixel's map is scipy's Spearman correlation, over the masks, of its mask value with the cosine."""
    net = LinearEmbedder().eval()
    probe, ref = _pair(5)
    options = {"masks": 40, "patches": 3, "patch_size": 3, "batch_size": 7, "seed": 3}
    e = VerificationExplainer(net, None, "corrrise", **options).explain(probe, ref)
    masks = CorrRISE(net, **options).masks((SIZE, SIZE)).numpy()
    units = [_unit(net, probe), _unit(net, ref)]
    for side, (images, theirs) in enumerate(((probe, units[1]), (ref, units[0]))):
        for b in range(2):
            copies = images[b][None] * torch.from_numpy(masks)[:, None]
            scores = _unit(net, copies) @ theirs[b]
            expected = np.zeros((SIZE, SIZE))
            for i in range(SIZE):
                for j in range(SIZE):
                    if masks[:, i, j].min() < masks[:, i, j].max():  # a pixel no mask hides has no correlation: 0
                        expected[i, j] = spearmanr(masks[:, i, j], scores).statistic
            np.testing.assert_allclose(_signed(e)[side, b], expected, atol=1e-6)
    assert (e.similar * e.different == 0).all()


def test_corrrise_ranks_ties_as_scipy() -> None:
    values = torch.tensor([[0.3, 0.1, 0.3, 0.2, 0.1, 0.3], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(average_ranks(values).numpy(), rankdata(values.numpy(), axis=1))


def test_corrrise_masks_have_three_patches_of_30_px() -> None:
    """Published masks (defaults): 500 masks, each 0 on exactly the union of 3 squares of 30 x 30 px, 1 elsewhere."""
    method = CorrRISE(LinearEmbedder())
    assert (method.n_masks, method.patches, method.patch_size) == (500, 3, 30)
    masks = method.masks((112, 112))
    assert masks.shape == (500, 112, 112) and set(masks.unique().tolist()) == {0.0, 1.0}
    origins = patch_origins(500, 3, 30, (112, 112), torch.Generator().manual_seed(method.seed))
    by_hand = np.ones((500, 112, 112), np.float32)
    for n, corners in enumerate(origins.tolist()):
        for r, c in corners:
            by_hand[n, r : r + 30, c : c + 30] = 0
    np.testing.assert_array_equal(masks.numpy(), by_hand)
    hidden = (masks == 0).sum(dim=(1, 2))
    assert (hidden >= 900).all() and (hidden <= 2700).all() and (hidden == 2700).any()


def test_corrrise_patches_lie_wholly_inside_the_image() -> None:
    """Corners drawn from [0, H - p] x [0, W - p]: no patch is cut at the border, yet the border is reached."""
    origins = patch_origins(2000, 3, 5, (12, 9), torch.Generator().manual_seed(1))
    assert origins[..., 0].min() == 0 and origins[..., 0].max() == 12 - 5
    assert origins[..., 1].min() == 0 and origins[..., 1].max() == 9 - 5
    single = patch_masks(origins[:, :1], 5, (12, 9))
    assert ((single == 0).sum(dim=(1, 2)) == 25).all()  # one patch: always its full 5 x 5 pixels
    assert (single[:, 0, 0] == 0).any() and (single[:, -1, -1] == 0).any()
    with pytest.raises(UserError, match="30 px patches do not fit in the 8x8 input"):
        CorrRISE(LinearEmbedder())(torch.zeros(1, 3, 8, 8), lambda out: out)


class Recorder(nn.Module):
    """A linear embedder that keeps every batch it is called on."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.seen = LinearEmbedder(), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.net(x)


def test_corrrise_shares_one_mask_set_across_pairs() -> None:
    """Two different pairs, explained apart, are masked with the same masks; a pair's maps do not depend
    on the pairs it is batched with."""
    options = {"masks": 12, "patches": 2, "patch_size": 3, "batch_size": 8}
    found = []
    for seed in (6, 7):  # two different pairs, two separate runs
        recorder = Recorder().eval()
        probe, ref = (x.abs() + 0.5 for x in _pair(seed))  # no zero pixel: the masks are copy / image
        VerificationExplainer(recorder, None, "corrrise", **options).explain(probe[:1], ref[:1])
        copies = torch.cat(recorder.seen[2:])  # after the two unmasked passes (descriptors, unmasked scores)
        images = torch.cat([probe[:1], ref[:1]])
        ratios = (copies.reshape(12, 2, 3, SIZE, SIZE) / images).round(decimals=5)  # mask-major rows
        assert torch.equal(ratios[:, :, :1].expand_as(ratios), ratios)  # one mask value for all channels
        assert torch.equal(ratios[:, 0], ratios[:, 1])  # probe and reference: the same masks
        found.append(ratios[:, 0, 0])
    assert torch.equal(found[0], found[1])
    assert torch.equal(found[0], CorrRISE(LinearEmbedder(), **options).masks((SIZE, SIZE)))
    net = LinearEmbedder().eval()
    probe, ref = _pair(8)
    both = VerificationExplainer(net, None, "corrrise", **options).explain(probe, ref)
    alone = VerificationExplainer(net, None, "corrrise", **options).explain(probe[1:], ref[1:])
    torch.testing.assert_close(both.similar[:, 1:], alone.similar, atol=1e-6, rtol=0)


def test_corrrise_explains_scout_scores_too() -> None:
    """In mode=scout the same estimator correlates the masks with the two logits and the confidence."""
    torch.manual_seed(0)
    model = nn.Sequential(LinearEmbedder(), nn.Linear(DIM, 3)).eval()
    x, _ = _pair(9)
    options = {"masks": 20, "patch_size": 3, "seed": 2}
    exp = ScoutExplainer(model, "corrrise", attribution_options=options).explain(x)
    assert exp.class_map.shape == exp.confidence_map.shape == (2, SIZE, SIZE)
    masks = CorrRISE(model, **options).masks((SIZE, SIZE))
    with torch.no_grad():
        logits = torch.stack([model(x * m) for m in masks], dim=-1)  # (B, 3, N)
    rows = torch.arange(2)
    expected = rank_correlation(logits[rows, exp.y_star], masks)
    torch.testing.assert_close(exp.class_map.double(), expected, atol=1e-6, rtol=0)


def test_corrrise_bad_requests_are_one_line() -> None:
    with pytest.raises(UserError, match="at least 3 masks"):
        CorrRISE(LinearEmbedder(), masks=2)
    with pytest.raises(UserError, match="patch_size .* >= 1"):
        CorrRISE(LinearEmbedder(), patch_size=0)
    with pytest.raises(UserError, match="black-box method.*drop attribution.layer=proj"):
        VerificationExplainer(LinearEmbedder(), "proj", "corrrise")
    assert CorrRISE(LinearEmbedder()).describe() == "CorrRISE (500 masks of 3 patches, 30 px)"


# ---------------------------------------------------------------------------------------------- CLI


CLI_OPTIONS = {  # 32 px inputs: CorrRISE's published 30 px patches still fit
    "fggb": ("attribution=fggb", "attribution.kwargs.threshold=0.1", "attribution.kwargs.blur_kernel=5"),
    "corrrise": ("attribution=corrrise", "attribution.kwargs.masks=16"),
}


@pytest.fixture(scope="module")
def embedder_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-18 ArcFace embedder (128-d, 32 px inputs) in train.py's checkpoint format."""
    torch.manual_seed(0)
    embedder = MarginEmbedderModule("resnet18", 6, heldout_identities=3, input_spec=SPEC, target_layer="layer3")
    return _save(embedder, tmp_path_factory.mktemp("ckpt") / "arcface.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CLI_OPTIONS))
def test_verify_cli_explains_two_photos(method: str, embedder_ckpt: Path, tmp_path: Path) -> None:
    """``explain.py mode=verify attribution=<method> images=[a.png,b.png]`` with a random embedder."""
    gen = np.random.default_rng(0)
    images = [str(save_image(gen.integers(0, 255, (40, 40, 3), dtype=np.uint8), tmp_path / f"{n}.png")) for n in "ab"]
    proc = run_entry(
        "explain.py",
        "mode=verify",
        f"images=[{images[0]},{images[1]}]",
        f"ckpt_path={embedder_ckpt}",
        "logger=none",
        *CLI_OPTIONS[method],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path, "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attribution"] == method and summary["layer"] is None
    (record,) = json.loads((out / "explanations.json").read_text())["pairs"]
    assert (out / record["figure"]).is_file()
    for side in ("probe", "reference"):
        assert not record[side]["degenerate"] and 0 <= record[side]["similar_share"] <= 1


@pytest.mark.slow
def test_fggb_refuses_mode_scout_before_loading_anything(tmp_path: Path) -> None:
    proc = run_entry("explain.py", "attribution=fggb", "logger=none", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: attribution=fggb explains face verification pairs only: use mode=verify (it needs both embeddings "
        "of a pair, not one score)"
    ]


@pytest.mark.slow
def test_leaderboard_ranks_fggb_and_corrrise_beside_rise(embedder_ckpt: Path, tmp_path: Path) -> None:
    """FaceParts triplets through ``explain.py mode=verify pairs=triplets`` for each method, then the leaderboard."""
    methods = {  # 32 px inputs: smaller blur and patches; this random embedder's cosines are 0.86-0.91
        "fggb": (
            "attribution=fggb",
            "attribution.kwargs.threshold=0.9",
            "attribution.kwargs.blur_kernel=5",
            "attribution.kwargs.blur_sigma=1",
        ),
        "corrrise": ("attribution=corrrise", "attribution.kwargs.masks=16", "attribution.kwargs.patch_size=8"),
        "rise": ("attribution=rise", "attribution.kwargs.masks=16", "attribution.kwargs.grid=3"),
    }
    for method, options in methods.items():
        (tmp_path / method).mkdir()
        proc = run_entry(
            "explain.py",
            "mode=verify",
            "pairs=triplets",
            "max_pairs=3",
            f"ckpt_path={embedder_ckpt}",
            *options,
            *FACEPARTS,
            cwd=tmp_path / method,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    rows = verify_benchmark.main([str(tmp_path)])
    assert {r["method"] for r in rows} == {"corrrise", "fggb", "rise", "chance (uniform map)"}
    assert rows[-1]["method"] == "chance (uniform map)" and len(rows[-1]["deletion_auc_ci"]) == 2
    for row in rows[:-1]:
        assert row["triplets"] == 3 and row["layer"] is None
        assert row["deletion_auc"] is not None and len(row["deletion_auc_ci"]) == 2 and len(row["share_ci"]) == 2
    table = (tmp_path / "leaderboard.md").read_text()
    assert "| fggb | 3 |" in table and "| corrrise | 3 |" in table
