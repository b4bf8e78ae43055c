"""Error-detection baselines, FPR at 95% TPR, bootstrap CIs and the multi-seed table (METHOD section 9)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scout_exp.hardness.baselines import BASELINES, baseline_scores, doctor_score, max_logit_score, prob_gap_score
from scout_exp.hardness.metrics import (
    aurc,
    bootstrap_ci,
    detection_measures,
    error_detection_auroc,
    evaluate_confidence,
    fpr_at_95_tpr,
)
from scout_exp.sweeps.hardness_table import main as table_main

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [0.0, 3.0, 1.0]])


def _softmax_rows() -> list[list[float]]:
    rows = []
    for row in LOGITS.tolist():
        total = sum(math.exp(v) for v in row)
        rows.append([math.exp(v) / total for v in row])
    return rows


def test_each_baseline_matches_a_hand_computation() -> None:
    probs = _softmax_rows()
    scores = baseline_scores(LOGITS)
    assert list(scores) == list(BASELINES)
    for i, p in enumerate(probs):
        top = sorted(p, reverse=True)
        entropy = -sum(v * math.log(v) for v in p)
        assert scores["softmax"][i].item() == pytest.approx(top[0], rel=1e-6)
        assert scores["max_logit"][i].item() == pytest.approx(max(LOGITS[i].tolist()), rel=1e-6)
        assert scores["certainty"][i].item() == pytest.approx(1 - entropy / math.log(3), rel=1e-5)
        assert scores["prob_gap"][i].item() == pytest.approx(top[0] - top[1], rel=1e-6)
        assert scores["doctor"][i].item() == pytest.approx(sum(v * v for v in p), rel=1e-6)
    assert max_logit_score(LOGITS).tolist() == pytest.approx([2.0, 0.3, 3.0])
    assert prob_gap_score(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(0.0)
    assert doctor_score(torch.zeros(1, 4)).item() == pytest.approx(0.25)  # uniform: 1/C, the least confident
    with pytest.raises(ValueError, match="2 classes"):
        prob_gap_score(torch.zeros(2, 1))


def test_fpr_at_95_tpr_hand_example() -> None:
    # 20 correct predictions with confidences 1..20 and 4 errors at 0.5, 1.5, 10.5, 30:
    # keeping 95% of the correct ones (19 of 20) puts the threshold at 2, which keeps the errors at 10.5 and 30.
    conf = torch.tensor([float(v) for v in range(1, 21)] + [0.5, 1.5, 10.5, 30.0])
    correct = torch.tensor([True] * 20 + [False] * 4)
    assert fpr_at_95_tpr(conf, correct) == pytest.approx(2 / 4)
    assert math.isnan(fpr_at_95_tpr(conf, torch.ones(24, dtype=torch.bool)))


def test_vectorised_measures_match_the_library_based_ones() -> None:
    g = torch.Generator().manual_seed(3)
    for n, rounding in ((300, 10), (57, 1000)):  # coarse rounding: many ties
        conf = torch.round(torch.rand(n, generator=g) * rounding) / rounding
        correct = torch.rand(n, generator=g) < 0.2 + 0.7 * conf
        both = detection_measures(np.stack([conf.numpy()] * 2), np.stack([correct.numpy()] * 2))
        assert both.shape == (3, 2)
        assert both[0, 1] == pytest.approx(error_detection_auroc(conf, correct), abs=1e-6)
        assert both[1, 1] == pytest.approx(aurc(conf, correct), abs=1e-9)
        assert both[2, 1] == pytest.approx(fpr_at_95_tpr(conf, correct), abs=1e-6)
    no_errors = detection_measures(np.arange(5.0), np.ones(5, bool))
    assert np.isnan(no_errors[0]) and np.isnan(no_errors[2]) and no_errors[1] == 0


def test_bootstrap_ci_brackets_the_estimate_and_shrinks_with_more_data() -> None:
    g = torch.Generator().manual_seed(0)
    widths = []
    for n in (100, 1600):
        conf = torch.rand(n, generator=g)
        correct = torch.rand(n, generator=g) < 0.3 + 0.6 * conf
        ci = bootstrap_ci(conf, correct, n_resamples=400)
        low, high = ci["auroc"]
        assert low < error_detection_auroc(conf, correct) < high
        assert ci["aurc"][0] < aurc(conf, correct) < ci["aurc"][1]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    assert bootstrap_ci(torch.rand(10), torch.ones(10, dtype=torch.bool), n_resamples=50)["auroc"] is None


def test_evaluate_confidence_reports_every_baseline_with_intervals() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 5, generator=g) * 2
    labels = torch.randint(0, 5, (200,), generator=g)
    m = evaluate_confidence(logits, labels, {"easiness": torch.rand(200, generator=g)}, n_resamples=200).metrics
    for score in (*BASELINES, "easiness"):
        for measure in ("auroc", "aurc", "fpr95"):
            assert m[f"{measure}_{score}"] is not None
            low, high = m[f"{measure}_{score}_ci"]
            assert low <= high
    assert "auroc_softmax_ci" not in evaluate_confidence(logits, labels, n_resamples=0).metrics


def _summary(seed: int, easiness: float) -> dict:
    summary = {"status": "ok", "confidence_split": "val", "confidence_samples": 100, "confidence_errors": 10 + seed}
    for score, auroc in (("softmax", 0.80 + 0.01 * seed), ("easiness", easiness)):
        summary.update({f"auroc_{score}": auroc, f"aurc_{score}": 0.05, f"fpr95_{score}": 0.5})
        summary.update({f"auroc_{score}_ci": [auroc - 0.1, auroc + 0.1], f"aurc_{score}_ci": [0.03, 0.07]})
        summary[f"fpr95_{score}_ci"] = [0.3, 0.7]
    return summary


def test_table_gives_mean_sd_ci_and_paired_difference(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for seed, easiness in enumerate((0.85, 0.87, 0.89)):
        (tmp_path / str(seed)).mkdir()
        (tmp_path / str(seed) / "summary.json").write_text(json.dumps(_summary(seed, easiness)))
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "summary.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    assert table_main([str(tmp_path)]) == 0
    text = (tmp_path / "hardness_table.md").read_text()
    assert "over 3 runs" in text and "errors per run: 10, 11, 12" in text
    easiness_row = next(line for line in text.splitlines() if line.startswith("| easiness"))
    assert "0.8700 ± 0.0200 [0.770, 0.970]" in easiness_row  # mean, sd (ddof 1), mean CI bounds
    assert "+0.0600 ± 0.0100" in easiness_row  # paired: 0.05, 0.06, 0.07 above softmax
    assert "easiness" in (tmp_path / "hardness_table.csv").read_text()
    assert "hardness_table" not in capsys.readouterr().err
    assert table_main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
