"""Phone photos and odd sizes: EXIF orientation, images too small for the detector, huge photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scout_exp.data import align
from scout_exp.data.images import read_rgb
from scout_exp.data.samples import sample_image
from scout_exp.io import save_image
from tests.conftest import ROOT, run_entry
from tests.reliability_helpers import face_images, tiny_checkpoint


def _sideways_jpeg(image: np.ndarray, path: Path) -> Path:
    """Save ``image`` as a phone does: pixels rotated 90 degrees, EXIF Orientation=6 to turn them back."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(image, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif, quality=95)
    return path


def test_read_rgb_applies_exif_orientation(tmp_path: Path) -> None:
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :20] = 255  # a white band on the left of the upright image
    shown = read_rgb(_sideways_jpeg(image, tmp_path / "phone.jpg"))
    assert shown.shape == image.shape
    assert shown[:, :15].mean() > 200 and shown[:, 30:].mean() < 50


def test_align_cli_phone_photo_and_tiny_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _sideways_jpeg(sample_image("sample:grace_hopper"), src / "phone.jpg")
    save_image(np.full((12, 12, 3), 128, np.uint8), src / "tiny.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "scout_exp.data.align", str(src), str(tmp_path / "dst")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "dst" / "align_report.json").read_text())
    assert report["aligned"] == 1 and report["no_face"] == [], report
    assert [t["file"] for t in report["too_small"]] == ["tiny.png"] and "12x12" in report["too_small"][0]["reason"]


class _RecordingDetector:
    """Records the size it is given and finds one face at fixed relative positions."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray, landmarks: bool = True) -> tuple:
        self.shapes.append(image.shape)
        h, w = image.shape[:2]
        box = np.array([[0.3 * w, 0.3 * h, 0.7 * w, 0.7 * h]])
        points = np.array(
            [[[0.4 * w, 0.4 * h], [0.6 * w, 0.4 * h], [0.5 * w, 0.5 * h], [0.42 * w, 0.6 * h], [0.58 * w, 0.6 * h]]]
        )
        return box, np.array([0.99]), points


def test_huge_photo_is_detected_on_a_downscaled_copy() -> None:
    detector = _RecordingDetector()
    image = np.zeros((3000, 4000, 3), np.uint8)
    boxes, _, points = align.detect_faces(image, detector)
    assert max(detector.shapes[0][:2]) == align.DETECT_MAX_SIDE
    np.testing.assert_allclose(boxes[0], [1200, 900, 2800, 2100], rtol=1e-3)
    np.testing.assert_allclose(points[0, 0], [1600, 1200], rtol=1e-3)


def test_too_small_is_a_user_error_not_a_crash() -> None:
    with pytest.raises(align.ImageTooSmallError, match="too small"):
        align.detect_faces(np.zeros((15, 200, 3), np.uint8), _RecordingDetector())


@pytest.mark.slow
def test_explain_says_an_image_is_too_small_in_one_line(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    (face,) = face_images(tmp_path, 1)
    tiny = save_image(np.full((12, 12, 3), 128, np.uint8), tmp_path / "tiny.png")
    result = run_entry(
        "explain.py", f"ckpt_path={ckpt}", f"images=[{tiny},{face}]", "align=dlib150", "logger=none", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "tiny.png" in result.stderr and "too small" in result.stderr and "Traceback" not in result.stderr
