"""Interpretable FR integration: annotated FaceParts, the Lightning module, test-stage metrics,
protocol data modules, the replication table, and train.py end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from scout_exp.data.datamodules import FacePartsDataModule
from scout_exp.data.faceparts_draw import PART_NAMES
from scout_exp.data.protocols import IJBATemplatesDataModule, LFWPairsDataModule
from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.interp.evaluate import EvalCollector, aggregate_peaks, gallery_probe_identification, pair_verification
from scout_exp.interp.module import VARIANTS, InterpFRModule, load_matching
from scout_exp.interp.peaks import peak_locations
from scout_exp.interp.table import main as table_main
from scout_exp.models import create_model
from tests.conftest import run_dir, run_entry

SPEC = InputSpec(size=48, mean=(0.5,) * 3, std=(0.5,) * 3)


def _faceparts(**kw) -> FacePartsDataModule:
    dm = FacePartsDataModule(
        num_identities=3,
        images_per_identity=4,
        image_size=96,
        input_spec=SPEC,
        val_fraction=0.25,
        test_fraction=0.25,
        batch_size=6,
        **kw,
    )
    dm.setup()
    return dm


def test_annotated_faceparts_items_match_the_resized_image() -> None:
    dm = _faceparts(with_annotations=True)
    x, y, landmarks, parts = dm.dataset[5]
    sample = dm.dataset.sample(5)
    assert x.shape == (3, 48, 48) and parts.shape == (48, 48) and landmarks.shape == (5, 2)
    assert y == sample.identity
    # Landmark i (pixel centres at integers in the 96 render) -> continuous coordinates in the 48 input.
    np.testing.assert_allclose(landmarks.numpy(), (sample.landmarks + 0.5) / 2, atol=1e-6)
    # the left eye centre lands on the left eye's label in the resized part map
    u, v = (landmarks[0] - 0.5).round().long().tolist()
    assert int(parts[v, u]) == PART_NAMES.index("left_eye") + 1
    assert len(_faceparts().dataset[5]) == 2  # default behaviour unchanged


def _module(variant: str = "sad_fad", **kw) -> InterpFRModule:
    return InterpFRModule("casianet_interp", 3, model_kwargs={"peaks": 6, "dropout": 0.0}, variant=variant, **kw)


def test_variants_select_the_loss_terms() -> None:
    assert not _module("base").needs_occlusion and not _module("sad").needs_occlusion
    assert _module("sad_fad").needs_occlusion
    assert _module("sad").loss_weights == VARIANTS["sad"]
    assert _module("base", weights={"sad_clean": 0.5, "fad": None}).loss_weights.sad_clean == 0.5
    with pytest.raises(UserError, match="objective.variant"):
        _module("both")
    with pytest.raises(UserError, match="unknown loss weight"):
        _module(weights={"sad": 1.0})
    with pytest.raises(UserError, match="casianet_interp"):
        InterpFRModule("casianet", 3)


def test_part_occlusion_blacks_out_the_part_bounding_box() -> None:
    dm = _faceparts(with_annotations=True)
    batch = next(iter(dm.train_dataloader()))
    module = _module(occlusion_parts=["nose", "mouth"])
    x_occ, masks = module.occlude(batch, part_index=1)
    label = PART_NAMES.index("mouth") + 1
    for k in range(x_occ.shape[0]):
        rows, cols = np.nonzero(batch[3][k].numpy() == label)
        expected = np.zeros((48, 48), bool)
        expected[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        np.testing.assert_array_equal(masks[k].numpy(), expected)
        assert bool((x_occ[k][:, expected] == -1).all())
        assert torch.equal(x_occ[k][:, ~expected], batch[0][k][:, ~expected])


def test_aligned_crops_without_landmarks_use_the_reference_rectangle() -> None:
    x = torch.zeros(2, 3, 110, 110)
    x_occ, masks = _module(occlusion="landmarks").occlude((x, torch.tensor([0, 1])), torch.Generator().manual_seed(3))
    rows, cols = np.nonzero(masks[0].numpy())
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (12, 32)
    assert 11 <= cols.min() <= 67 and 11 <= rows.min() <= 87
    assert torch.equal(masks[0], masks[1]) and int((x_occ == -1).sum()) == 3 * 2 * 12 * 32


def test_training_step_runs_every_variant_and_rejects_protocol_labels() -> None:
    batch = next(iter(_faceparts(with_annotations=True).train_dataloader()))
    for variant in VARIANTS:
        module = _module(variant)
        module.log = lambda *a, **k: None  # no trainer attached
        loss = module.training_step(batch, 0)
        loss.backward()
        grad = module.model.map_conv.weight.grad
        assert torch.isfinite(loss) and grad is not None and grad.abs().sum() > 0
    with pytest.raises(UserError, match="evaluation protocol"):
        module.training_step((batch[0], torch.full_like(batch[1], -1)), 0)


def test_base_checkpoint_loads_into_the_interpretable_network(tmp_path: Path) -> None:
    base = create_model("casianet", num_classes=3)
    state = {f"model.{k}": v for k, v in base.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "base.ckpt")
    module = _module()
    loaded = load_matching(module, tmp_path / "base.ckpt")
    assert "model.stage4.2.conv.weight" in loaded and "model.map_conv.weight" not in loaded
    assert torch.equal(module.model.stage2[1].conv.weight, base.stage2[1].conv.weight)
    torch.save({"state_dict": {"other.weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="no tensor"):
        load_matching(module, tmp_path / "other.ckpt")


def test_pair_verification_matches_sklearn_and_identification_by_hand() -> None:
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(np.repeat(np.arange(6), 5))
    features = torch.from_numpy(rng.normal(size=(30, 4)) + 1.5 * np.eye(6, 4)[labels.numpy()])
    out = pair_verification(features, labels, fars=(0.1, 0.01))
    f = features.numpy() / np.linalg.norm(features.numpy(), axis=1, keepdims=True)
    i, j = np.triu_indices(30, k=1)
    fpr, tpr, _ = roc_curve(labels.numpy()[i] == labels.numpy()[j], (f[i] * f[j]).sum(1))
    for far in (0.1, 0.01):
        assert out[f"tar@far={far:g}"] == pytest.approx(tpr[fpr <= far].max())
    assert out["n_genuine"] == 6 * 10 and out["n_impostor"] == 435 - 60
    # identification by hand: gallery = the first face of each identity (e0, e1, e2); probe 4 (identity 1)
    # is closer to e0 than to e1 (rank 2), the other probes rank 1.
    e = torch.eye(3, dtype=torch.float64)
    faces = torch.stack([e[0], e[1], e[2], e[0], e[1] + 2 * e[0], e[2] + 0.5 * e[0]])
    ident = gallery_probe_identification(faces, torch.tensor([0, 1, 2, 0, 1, 2]), ranks=(1, 2))
    assert ident == {"rank1": pytest.approx(2 / 3), "rank2": 1.0}


def test_collected_peaks_match_peak_locations_on_full_maps() -> None:
    maps = torch.zeros(4, 3, 12, 12)
    maps[:, 0, 2, 3] = 1.0  # filter 0 always at cell (2, 3)
    maps[:, 1, 9, 9] = torch.tensor([1.0, 1.0, 2.0, 0.0])  # filter 1: three faces
    maps[:, 2, 5, 0] = 0.5
    maps[0, 2, 5, 11] = 1.5  # filter 2 moves on face 0
    collector = EvalCollector(peak_frame=(96, 96))
    labels = torch.tensor([0, 1, 0, 1])
    collector.add(
        torch.zeros(4, 3, 48, 48),
        labels,
        torch.eye(4, 320)[:, :320] + torch.eye(4, 320)[[1, 0, 3, 2]],
        maps,
        occluded_logits=torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0]]),
    )
    result = collector.compute(ranks=(1,), align=False)
    reference = peak_locations(maps, input_size=(96, 96))
    np.testing.assert_allclose(result["locations"], reference.locations.numpy(), atol=1e-9)
    np.testing.assert_allclose(result["deviations"], reference.deviations.numpy(), atol=1e-9)
    assert result["metrics"]["peak_spread_d"] == pytest.approx(reference.spread)
    # by hand: filter 0 at ((3 + 0.5) * 8, (2 + 0.5) * 8) = (28, 20) in the 96 frame
    np.testing.assert_allclose(result["locations"][0], [28.0, 20.0])
    assert result["metrics"]["acc_occluded"] == pytest.approx(0.75)  # argmax 0, 0, 0, 1 vs labels 0, 1, 0, 1
    assert result["mean_face"].shape == (96, 96, 3)
    _, _, spread = aggregate_peaks(torch.tensor([[[0.0, 0.0], [6.0, 8.0]]]), torch.ones(1, 2))
    assert spread == pytest.approx(5.0)


def _write_faces(root: Path, names: dict[str, int]) -> None:
    rng = np.random.default_rng(1)
    for name, count in names.items():
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            cv2.imwrite(str(root / name / f"{name}_{i:04d}.jpg"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))


def _checkpoint(tmp_path: Path, num_classes: int = 3) -> Path:
    path = tmp_path / "net.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"num_classes": num_classes}}, path)
    return path


def test_lfw_pairs_module_scores_constructed_features(tmp_path: Path) -> None:
    _write_faces(tmp_path / "lfw", {"Ann": 2, "Bob": 2})
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 2\nAnn 1 2\nBob 1 2\nAnn 1 Bob 1\nAnn 2 Bob 2\n")
    dm = LFWPairsDataModule(
        root=str(tmp_path / "lfw"),
        pairs=str(pairs),
        checkpoint=str(_checkpoint(tmp_path)),
        input_spec=SPEC,
        fars=(0.5,),
    )
    dm.setup()
    assert dm.num_classes == 3 and len(dm.dataset) == 4 and dm.dataset[0][0].shape == (3, 48, 48)
    names = [p.name for p in dm.files()]
    assert names == ["Ann_0001.jpg", "Ann_0002.jpg", "Bob_0001.jpg", "Bob_0002.jpg"]
    # Ann's faces alike, Bob's orthogonal to each other: the genuine pair scores 1 and 0, impostors 0.6, 0.
    feats = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    out = dm.evaluate_features(feats)
    assert out["tar@far=0.5"] == 0.5 and out["n_pairs"] == 4
    with pytest.raises(UserError, match="ckpt_path"):
        LFWPairsDataModule(root=str(tmp_path / "lfw"), pairs=str(pairs), input_spec=SPEC).setup()


def test_ijba_template_protocol_gives_the_expected_tar(tmp_path: Path) -> None:
    _write_faces(tmp_path / "img", {"s": 6})
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "TEMPLATE_ID,SUBJECT_ID,FILE\n1,10,s/s_0001.jpg\n1,10,s/s_0002.jpg\n2,10,s/s_0003.jpg\n"
        "3,20,s/s_0004.jpg\n4,20,s/s_0005.jpg\n4,20,s/s_0006.jpg\n"
    )
    comparisons = tmp_path / "pairs.csv"
    comparisons.write_text("1,2\n3,4\n1,3\n2,4\n")
    dm = IJBATemplatesDataModule(
        root=str(tmp_path / "img"),
        verify_metadata=str(meta),
        verify_pairs=str(comparisons),
        gallery=str(meta),
        probe=str(meta),
        checkpoint=str(_checkpoint(tmp_path)),
        input_spec=SPEC,
        fars=(0.01, 0.5),
    )
    dm.setup()
    assert len(dm.dataset) == 6
    # template means: T1 = e0, T2 = e0 (genuine 1.0); T3 = e1, T4 = (e1 + e2) / 2 (genuine cos 0.5 after unit rows);
    # impostors T1-T3 = 0, T2-T4 = 0: at FAR 0 both genuine pairs are accepted.
    e = torch.eye(3)
    feats = torch.stack([e[0], e[0], e[0], e[1], e[1], e[2]])
    out = dm.evaluate_features(feats)
    assert out["tar@far=0.01"] == 1.0 and out["eer"] == 0.0 and out["n_pairs"] == 4
    assert out["rank1"] == 1.0


def test_replication_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for k, (variant, d) in enumerate((("sad_fad", 12.5), ("base", 4.25), ("sad", 9.0))):
        (tmp_path / str(k)).mkdir()
        (tmp_path / str(k) / "summary.json").write_text(
            json.dumps(
                {
                    "status": "ok",
                    "variant": variant,
                    "test_acc": 0.9,
                    "test_tar@far=0.01": 0.5,
                    "test_acc_occluded": 0.8,
                    "test_peak_spread_d": d,
                }
            )
        )
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "summary.json").write_text(json.dumps({"status": "failed", "error": "boom", "variant": "sad"}))
    assert table_main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| base CNN | 0.900 | 0.500 | 0.800 | 4.2 | 6.9 |"
    assert lines[3].startswith("| SAD only | 0.900") and lines[3].endswith("| 17.1 |")
    assert "failed: boom" in lines[4] and lines[5].startswith("| SAD + FAD") and "| 12.5 | 18.7 |" in lines[5]
    assert (tmp_path / "replication.md").read_text().splitlines() == lines
    assert table_main([str(tmp_path / "nothing")]) == 2


TINY_INTERP = (
    "experiment=interp_fr",
    "data.num_identities=3",
    "data.images_per_identity=8",
    "data.test_fraction=0.25",
    "data.batch_size=6",
    "model.input.size=32",
    "trainer.max_epochs=1",
    "figure_samples=0",
    "logger=csv",
)


@pytest.mark.slow
def test_train_then_evaluate_end_to_end(tmp_path: Path) -> None:
    first, second, third = (tmp_path / n for n in ("train", "eval", "lfw"))
    for d in (first, second, third):
        d.mkdir()
    result = run_entry("train.py", *TINY_INTERP, cwd=first)
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dir(first)
    summary = json.loads((run / "summary.json").read_text())
    for key in (
        "test_acc",
        "test_tar@far=0.01",
        "test_eer",
        "test_rank1",
        "test_rank5",
        "test_acc_occluded",
        "test_peak_spread_d",
    ):
        assert isinstance(summary[key], float), key
    assert summary["variant"] == "sad_fad" and (run / "figures" / "peaks.png").stat().st_size > 1000

    ckpt = run / "checkpoints" / "last.ckpt"
    result = run_entry("train.py", *TINY_INTERP, "train=false", "test=true", f"ckpt_path={ckpt}", cwd=second)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((run_dir(second) / "summary.json").read_text())
    assert again["test_peak_spread_d"] > 0 and (run_dir(second) / "figures" / "peaks.png").is_file()

    _write_faces(third / "lfw", {"Ann": 2, "Bob": 2})
    (third / "pairs.txt").write_text("Ann 1 2\nBob 1 2\nAnn 1 Bob 1\nAnn 2 Bob 2\n")
    result = run_entry(
        "train.py",
        "experiment=interp_fr_real",
        "data=lfw_pairs",
        f"data.root={third / 'lfw'}",
        f"data.pairs={third / 'pairs.txt'}",
        "data.num_workers=0",
        "model.input.size=32",
        "train=false",
        "test=true",
        f"ckpt_path={ckpt}",
        "figure_samples=0",
        "logger=csv",
        cwd=third,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lfw = json.loads((run_dir(third) / "summary.json").read_text())
    assert lfw["test_n_pairs"] == 4.0 and 0.0 <= lfw["test_eer"] <= 1.0 and "test_acc" not in lfw


def test_landmarks_file_puts_the_occluder_where_the_landmarks_say(tmp_path: Path) -> None:
    from scout_exp.data.landmarks import ImageFolderWithLandmarks, read_landmarks
    from scout_exp.interp.occlusion import REFERENCE_LANDMARKS_110

    _write_faces(tmp_path / "faces", {"a": 1, "b": 1})
    # image a: the reference face itself; image b: the same face shifted 11 px right in a 110 frame
    ref = REFERENCE_LANDMARKS_110.numpy() / 110.0
    rows = [
        ["file", *[f"{c}{k}" for k in range(1, 6) for c in "xy"]],
        ["a/a_0001.jpg", *ref.reshape(-1)],
        ["b/b_0001.jpg", *(ref + [0.1, 0.0]).reshape(-1)],
    ]
    (tmp_path / "lm.csv").write_text("\n".join(",".join(str(c) for c in r) for r in rows) + "\n")
    assert read_landmarks(tmp_path / "lm.csv").shape == (2, 5, 2)
    spec = InputSpec(size=110, mean=(0.5,) * 3, std=(0.5,) * 3)
    dm = ImageFolderWithLandmarks(
        landmarks=str(tmp_path / "lm.csv"), root=str(tmp_path / "faces"), input_spec=spec, val_fraction=0.0
    )
    dm.setup()
    items = [dm.dataset[i] for i in range(2)]
    np.testing.assert_allclose(items[1][2].numpy(), REFERENCE_LANDMARKS_110.numpy() + [11.0, 0.0], atol=1e-4)
    batch = tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))
    _, masks = _module(occlusion="landmarks").occlude(batch, torch.Generator().manual_seed(0))
    rows_a, cols_a = np.nonzero(masks[0].numpy())
    rows_b, cols_b = np.nonzero(masks[1].numpy())
    assert (rows_a.max() - rows_a.min() + 1, cols_a.max() - cols_a.min() + 1) == (12, 32)
    np.testing.assert_array_equal(rows_b, rows_a)
    np.testing.assert_array_equal(cols_b, cols_a + 11)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="landmarks"):
        read_landmarks(tmp_path / "bad.npy")
    np.save(tmp_path / "three.npy", np.zeros((3, 5, 2)))
    with pytest.raises(UserError, match="3 images but the dataset has 2"):
        read_landmarks(tmp_path / "three.npy", 2)
