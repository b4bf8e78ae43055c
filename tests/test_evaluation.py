"""Verification ROC / TAR@FAR / EER, CMC, LFW pairs and IJB-A-style template protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from scout_exp.errors import UserError
from scout_exp.evaluation.identification import cmc, match_ranks
from scout_exp.evaluation.templates import (
    TemplateSet,
    evaluate_templates,
    load_ijba_split,
    read_template_csv,
    read_template_pairs,
    template_similarity,
)
from scout_exp.evaluation.verification import eer, lfw_image_path, read_pairs, tar_at_far, verification_roc


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_matches_sklearn(decimals: int | None) -> None:
    rng = np.random.default_rng(0)
    same = rng.random(500) < 0.3
    scores = rng.normal(size=500) + same
    if decimals is not None:
        scores = np.round(scores, decimals)  # many ties
    fpr, tpr, thr = verification_roc(torch.tensor(scores), same)
    s_fpr, s_tpr, s_thr = roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr)
    np.testing.assert_allclose(tpr, s_tpr)
    assert np.isinf(thr[0]) and np.isinf(s_thr[0])
    np.testing.assert_allclose(thr[1:], s_thr[1:])


def test_tar_at_far_and_eer_hand_cases() -> None:
    # impostors 0..9 (10 of them), genuines 5.5..14.5 step 1 (10)
    impostor = np.arange(10.0)
    genuine = np.arange(10.0) + 5.5
    scores = np.r_[impostor, genuine]
    same = np.r_[np.zeros(10), np.ones(10)]
    tars = tar_at_far(scores, same, fars=(0.1, 0.3, 0.05))
    # FAR 0.1: lowest threshold letting one impostor (9) in is 8.5 -> genuines 8.5..14.5 = 7 of 10
    # FAR 0.3: threshold 6.5 (impostors 7, 8, 9) -> 6.5..14.5 = 9 of 10
    # FAR 0.05: no impostor may pass -> threshold 9.5 -> 6 of 10
    assert tars == {0.1: 0.7, 0.3: 0.9, 0.05: 0.6}
    # EER: threshold t in (7, 7.5]: FAR 2/10 (8, 9), FRR 2/10 (5.5, 6.5) -> 0.2
    assert eer(scores, same) == pytest.approx(0.2)
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0
    with pytest.raises(UserError):
        verification_roc([0.1, 0.2], [1, 1])


def test_cmc_constructed() -> None:
    gallery = ["a", "b", "c", "a"]
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # probe a: best genuine 0.9, rank 1
            [0.8, 0.7, 0.75, 0.0],  # probe b: genuine 0.7 below a (0.8) and c (0.75) -> rank 3
            [0.5, 0.5, 0.5, 0.5],  # probe c: tie with 3 impostors -> rank 4 (pessimistic)
            [0.2, 0.9, 0.3, 0.1],  # probe d: not in the gallery -> excluded
        ]
    )
    probes = ["a", "b", "c", "d"]
    assert match_ranks(sim, probes, gallery).tolist() == [1, 3, 4, 0]
    assert cmc(sim, probes, gallery, ranks=(1, 3, 5)) == {1: 1 / 3, 3: 2 / 3, 5: 1.0}
    with pytest.raises(UserError):
        cmc(sim[:, :3], probes, gallery)


def test_read_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("1\t2\nAaron_Peirsol\t1\t2\nAJ_Cook\t1\tMarsha_Thomason\t1\n")
    pairs = read_pairs(path)
    assert [(p.name1, p.index1, p.name2, p.index2, p.same) for p in pairs] == [
        ("Aaron_Peirsol", 1, "Aaron_Peirsol", 2, True),
        ("AJ_Cook", 1, "Marsha_Thomason", 1, False),
    ]
    assert lfw_image_path("/lfw", "AJ_Cook", 1) == Path("/lfw/AJ_Cook/AJ_Cook_0001.jpg")
    path.write_text("10 300\nAaron_Peirsol 1 x\n")
    with pytest.raises(UserError, match=":2:"):
        read_pairs(path)
    with pytest.raises(UserError):
        read_pairs(tmp_path / "missing.txt")


def _brute_template_score(unit: np.ndarray, a: list[int], b: list[int], reduce: str) -> float:
    d = unit[a] @ unit[b].T
    if reduce == "mean":
        return float(d.mean())
    if reduce == "max":
        return float(d.max())
    return float(np.r_[d.max(axis=1), d.max(axis=0)].mean())


@pytest.mark.parametrize("reduce", ["mean", "max", "mean_best"])
def test_template_similarity_matches_brute_force(reduce: str) -> None:
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(12, 5))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    groups_a = [[0, 1], [2], [3, 4, 5]]
    groups_b = [[6, 7, 8], [9], [10, 11], [0]]
    got = template_similarity(unit, [np.array(g) for g in groups_a], [np.array(g) for g in groups_b], reduce)
    expected = [[_brute_template_score(unit, a, b, reduce) for b in groups_b] for a in groups_a]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_template_protocol_end_to_end(tmp_path: Path) -> None:
    # 4 subjects with orthogonal directions; each subject has 2 templates of 2 images each.
    # Subject 3's second template is made of images pointing at subject 0 (a hard genuine pair
    # that also looks like subject 0): the genuine pair (s3 t1, s3 t2) scores 0.
    dims = np.eye(4)
    rows, files, feats = [], [], []
    for s in range(4):
        for t in range(2):
            tid = 10 * s + t
            for i in range(2):
                direction = dims[0] if (s == 3 and t == 1) else dims[s]
                name = f"img/{tid}_{i}.jpg"
                rows.append(f"{tid},{s},{name},0")
                files.append(name)
                feats.append(direction * (1.0 + i))  # scale is irrelevant to cosine
    root = tmp_path / "IJB-A"
    header = "TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID\n"
    _write(root / "verify/split1/verify_metadata_1.csv", header + "\n".join(rows) + "\n")
    genuine = [(0, 1), (10, 11), (20, 21), (30, 31)]
    impostor = [(0, 10), (0, 20), (10, 30), (20, 31), (1, 21), (11, 30)]
    # impostor (0, 31) would score 1.0; leave it out so the genuine ranking is the only failure
    _write(
        root / "verify/split1/verify_comparisons_1.csv",
        "\n".join(f"{a},{b}" for a, b in genuine + impostor) + "\n",
    )
    gallery_rows = [r for r in rows if r.split(",")[0] in {"0", "10", "20", "30"}]
    probe_rows = [r for r in rows if r.split(",")[0] in {"1", "11", "21", "31"}]
    _write(root / "search/split1/search_gallery_1.csv", header + "\n".join(gallery_rows) + "\n")
    _write(root / "search/split1/search_probe_1.csv", header + "\n".join(probe_rows) + "\n")

    protocol = load_ijba_split(root, 1)
    assert isinstance(protocol["verify_set"], TemplateSet)
    assert protocol["pairs"][:2] == [("0", "1"), ("10", "11")]
    result = evaluate_templates(np.array(feats), files, fars=(0.1, 0.5), ranks=(1, 2), **protocol)
    # scores: genuine 1, 1, 1, 0; impostors all 0 (ties with the hard genuine).
    # FAR 0.1 (at most 0 of 6 impostors): threshold above 0 -> TAR 3/4.
    assert result["tar@far=0.1"] == pytest.approx(0.75)
    assert result["tar@far=0.5"] == pytest.approx(0.75)
    assert result["n_pairs"] == 10
    # identification: probe 31 (subject 3) looks like subject 0 -> gallery 0 first, then ties -> rank 4
    assert result["rank1"] == pytest.approx(0.75) and result["rank2"] == pytest.approx(0.75)
    assert result["n_probes"] == 4

    with pytest.raises(UserError, match="no feature"):
        evaluate_templates(np.array(feats[:-1]), files[:-1], **protocol)


def test_template_files_errors(tmp_path: Path) -> None:
    bad = _write(tmp_path / "t.csv", "TEMPLATE,SUBJECT,FILE\n1,2,a.jpg\n")
    with pytest.raises(UserError, match="header"):
        read_template_csv(bad)
    mixed = _write(tmp_path / "m.csv", "TEMPLATE_ID,SUBJECT_ID,FILE\n1,2,a.jpg\n1,3,b.jpg\n")
    with pytest.raises(UserError, match="mixes subjects"):
        read_template_csv(mixed).templates()
    pairs = _write(tmp_path / "p.csv", "TEMPLATE_ID1,TEMPLATE_ID2\n1,2\n3\n")
    with pytest.raises(UserError, match=":3:"):
        read_template_pairs(pairs)
