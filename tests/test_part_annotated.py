"""The part-annotated data protocol: FaceParts implements it, and a throwaway data set runs through explain.py."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scout_exp.data.faceparts import FACE_PARTS, FaceParts
from scout_exp.data.part_annotated import PartAnnotated
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.pairs import split_pairs
from scout_exp.metrics.truth import part_truth
from tests.conftest import run_dir, run_entry

#: A data set a user might write: 4 identities whose two parts (a square, a disc) take one of two
#: colours each; look-alikes differ in the square alone. No counterfactual renders.
TINY_PARTS = '''
"""Throwaway part-annotated data set for tests/test_part_annotated.py."""

import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.data.datamodules import FaceDataModule
from scout_exp.data.part_annotated import PartAnnotated, PartSample

COLOURS = ((220, 40, 40), (40, 60, 220))


class TinyParts(PartAnnotated):
    part_names = ("square", "disc")

    def __init__(self, num_identities, images_per_identity, image_size):
        self.num_identities, self.images_per_identity, self.size = num_identities, images_per_identity, image_size
        self.codes = np.array([[a % 2, (a // 2) % 2] for a in range(num_identities)])

    def __len__(self):
        return self.num_identities * self.images_per_identity

    def identity_of(self, index):
        return int(index) % self.num_identities

    def lookalikes(self, identity):
        return [b for b in (identity ^ 1,) if b < self.num_identities]

    def parts_differ(self, a, b):
        return self.codes[a] != self.codes[b]

    def part_sample(self, index):
        rng = np.random.default_rng(index)
        s = self.size
        image = rng.integers(90, 140, size=(s, s, 3)).astype(np.uint8)
        part_map = np.full((s, s), -1, np.int64)
        dy, dx = rng.integers(-2, 3, size=2)
        yy, xx = np.mgrid[:s, :s]
        square = (abs(yy - s // 2 - dy) < s // 6) & (abs(xx - s // 4 - dx) < s // 6)
        disc = (yy - s // 2 - dy) ** 2 + (xx - 3 * s // 4 - dx) ** 2 < (s // 6) ** 2
        for k, mask in enumerate((square, disc)):
            image[mask] = COLOURS[self.codes[self.identity_of(index)][k]]
            part_map[mask] = k
        return PartSample(image, part_map)


class _Images(Dataset):
    def __init__(self, data, transform):
        self.data, self.transform = data, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(self.data.part_sample(i).image), self.data.identity_of(i)


class TinyPartsDataModule(FaceDataModule):
    def __init__(self, num_identities=4, images_per_identity=10, image_size=32, **kwargs):
        super().__init__(**kwargs)
        self.images = TinyParts(num_identities, images_per_identity, image_size)
        self.part_data = self.images

    def build(self):
        data = self.images
        labels = np.array([data.identity_of(i) for i in range(len(data))])
        return _Images(data, self.preprocess), labels, data.num_identities


class NoPartsDataModule(TinyPartsDataModule):
    """The same images without part ground truth."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.part_data = None
'''

#: explain.py on the throwaway data set: its data config is FaceParts' with the target replaced and
#: the keys it does not take removed
TINY_DATA = (
    "plugins=[tiny_parts]",
    "data._target_=tiny_parts.TinyPartsDataModule",
    "~data.difficulty",
    "~data.lookalikes",
    "~data.with_annotations",
    "data.num_identities=4",
    "data.images_per_identity=10",
    "data.image_size=32",
)
FAST = ("model.input.size=32", "trainer.max_epochs=1", "data.batch_size=8", "logger=none")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on PYTHONPATH (here and in the commands the tests start) holding ``tiny_parts.py``."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "tiny_parts.py").write_text(TINY_PARTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(folder), os.environ.get("PYTHONPATH")))))
        mp.syspath_prepend(str(folder))
        yield folder
    sys.modules.pop("tiny_parts", None)


@pytest.fixture(scope="module")
def explained(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log dir where explain.py trained a classifier on the throwaway data set and explained its val split."""
    log_dir = tmp_path_factory.mktemp("logs")
    overrides = (*TINY_DATA, *FAST, "split=val", "metrics=[parts]", "attribution.layer=layer2")
    result = run_entry("explain.py", *overrides, cwd=log_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir


def test_faceparts_satisfies_the_protocol() -> None:
    fp = FaceParts(num_identities=8, images_per_identity=4, image_size=64, seed=3)
    assert isinstance(fp, PartAnnotated) and fp.has_counterfactuals and fp.part_names == FACE_PARTS
    assert len(fp) == 32 and fp.identity_of(13) == 5
    for index in (0, 9, 30):
        sample, rendered = fp.part_sample(index), fp.render(index)
        np.testing.assert_array_equal(sample.image, rendered.image)
        labels = rendered.parts.astype(np.int64) - 1
        labels[labels >= len(FACE_PARTS)] = -1  # the occluder is no part
        np.testing.assert_array_equal(sample.part_map, labels)
        assert sample.part_map.dtype == np.int64 and sample.part_map.shape == (64, 64)
    for a, b in ((0, 1), (0, 5), (6, 7)):
        differ = fp.parts_differ(a, b)
        assert differ.dtype == bool and [p for p, d in zip(FACE_PARTS, differ) if d] == fp.differing_parts(a, b)
    np.testing.assert_array_equal(fp.counterfactual(9, 2, 4), fp.render(9, swap={"hair": 4}).image)


@pytest.mark.parametrize(("index", "counter"), [(0, 1), (5, 3), (13, 2), (22, 7)])
def test_part_truth_is_the_faceparts_ground_truth(index: int, counter: int) -> None:
    """Equal to what the FaceParts-only truth function computed from ``FaceParts.render``."""
    fp = FaceParts(num_identities=8, images_per_identity=5, image_size=64, seed=3)
    preprocess = Preprocess(InputSpec(size=32))
    truth = part_truth(fp, index, counter, (32, 32), preprocess, interventions=True)
    labels = cv2.resize(fp.render(index).parts, (32, 32), interpolation=cv2.INTER_NEAREST).astype(np.int64) - 1
    labels[labels >= len(FACE_PARTS)] = -1
    assert truth.part_map.dtype == torch.int64 and torch.equal(truth.part_map, torch.from_numpy(labels))
    diff = fp.differing_parts(fp.identity_of(index), counter)
    assert torch.equal(truth.discriminative, torch.tensor([p in diff for p in FACE_PARTS]))
    assert list(truth.switched) == [FACE_PARTS.index(p) for p in diff]
    for p in diff:
        expected = preprocess(fp.render(index, swap={p: counter}).image)
        assert torch.equal(truth.switched[FACE_PARTS.index(p)], expected)


def test_a_data_set_without_counterfactuals_refuses_interventions(plugin_dir: Path) -> None:
    data = importlib.import_module("tiny_parts").TinyParts(4, 10, 32)
    assert isinstance(data, PartAnnotated) and not data.has_counterfactuals
    pairs = split_pairs(data, list(range(8)), None)
    assert [(p.class_1, p.class_2) for p in pairs[:4]] == [(0, 1), (1, 0), (2, 3), (3, 2)]  # look-alikes first
    assert pairs[0].meta == {"discriminative_parts": ["square"], "k": 1}
    truth = part_truth(data, 0, 3, (16, 16))
    assert truth.part_map.shape == (16, 16) and truth.discriminative.tolist() == [True, True]
    with pytest.raises(UserError, match="no counterfactual renders"):
        part_truth(data, 0, 1, (32, 32), Preprocess(InputSpec(size=32)), interventions=True)
    with pytest.raises(UserError, match="no counterfactual renders"):
        data.counterfactual(0, 0, 1)


@pytest.mark.slow
def test_explain_a_split_of_a_plugin_data_set(explained: Path) -> None:
    record = json.loads((run_dir(explained, "explain") / "explanations.json").read_text())
    assert record["summary"]["pairs"] == 4 and record["summary"]["metrics"] == ["parts"]
    for pair in record["pairs"]:
        assert pair["k"] == 1 and pair["discriminative_parts"] == ["square"]  # each identity's look-alike
        for side in ("image_1", "image_2"):
            item = pair[side]
            assert set(item["parts_in_segment"]) <= {"square", "disc"}
            assert item["precision"] is None or 0.0 <= item["precision"] <= 1.0
    trained = json.loads(run_dir(explained).joinpath("summary.json").read_text())
    assert trained["status"] == "ok" and trained["num_classes"] == 4  # trained on demand on the plugin data set


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error:"), lines[-1]
    return lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("metrics=[interventions]",), "tiny_parts.TinyPartsDataModule has no counterfactual renders"),
        (
            ("data._target_=tiny_parts.NoPartsDataModule", "metrics=[deletion]"),  # replaces TINY_DATA's target
            "explaining a data split needs a part-annotated data set (e.g. data=faceparts)",
        ),
    ],
)
def test_split_errors_are_one_line(explained: Path, tmp_path: Path, overrides: tuple[str, ...], expected: str) -> None:
    ckpt = next(explained.glob("train/runs/*/checkpoints/last.ckpt"))
    replaced = {o.split("=", 1)[0] for o in overrides}
    data = [o for o in TINY_DATA if o.split("=", 1)[0] not in replaced]
    result = run_entry("explain.py", *data, *FAST, "split=val", *overrides, f"ckpt_path={ckpt}", cwd=tmp_path)
    assert expected in _one_line_error(result)
