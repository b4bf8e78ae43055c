"""Catalogue of pretrained weights that can be fetched offline-friendly (docs/method.md section 5).

Every entry names where the weights come from (an npm package), its licence, the input
preprocessing the network expects, and the sha256 of the archive and of every file kept from it,
measured once on the real ``npm pack`` output and checked on every fetch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scout_exp.data.transforms import InputSpec
from scout_exp.registry import Registry


@dataclass(frozen=True)
class ZooEntry:
    """One fetchable set of pretrained weights.

    ``files`` maps a member path inside the archive to its sha256; the member is cached under its
    base name. ``tarball_sha256`` is the digest of the registry archive (``None`` skips that check,
    the per-file digests are always checked).
    """

    name: str
    description: str
    npm_spec: str
    licence: str
    homepage: str
    model: str
    input_spec: InputSpec
    files: dict[str, str] = field(default_factory=dict)
    tarball_sha256: str | None = None


FACE_DESCRIPTOR_INPUT = InputSpec(
    size=150,
    channel_order="RGB",
    mean=(122.782, 117.001, 104.298),
    std=(255.0, 255.0, 255.0),
    pixel_scale=255.0,
)
"""Preprocessing of the descriptor net: ``(x - mean) / 255`` on 0-255 RGB, 150x150 aligned crops."""

#: the catalogue; every module of scout_exp.zoo is imported on the first lookup (package discovery)
_ENTRIES: Registry[ZooEntry] = Registry("pretrained model", package="scout_exp.zoo")


def register_entry(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the catalogue; ValueError when its name is taken."""
    return _ENTRIES.add(entry.name, entry)


def list_entries() -> list[ZooEntry]:
    """All catalogue entries, sorted by name."""
    return [_ENTRIES[name] for name in _ENTRIES.names()]


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; unknown names are a :class:`UserError` listing the known ones."""
    return _ENTRIES.lookup(name)


register_entry(
    ZooEntry(
        name="face_descriptor",
        description=(
            "dlib's 29-layer face-recognition ResNet (dlib_face_recognition_resnet_model_v1), "
            "128-d descriptors, same person when the Euclidean distance is below 0.6; TF.js "
            "weights carried by face-api"
        ),
        npm_spec="@vladmandic/face-api@1.7.15",
        licence="MIT (npm package @vladmandic/face-api); weights: dlib-models by Davis King (CC0)",
        homepage="https://github.com/vladmandic/face-api",
        model="face_descriptor",
        input_spec=FACE_DESCRIPTOR_INPUT,
        files={
            "package/model/face_recognition_model-weights_manifest.json": (
                "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"
            ),
            "package/model/face_recognition_model.bin": (
                "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
            ),
            "package/LICENSE": "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        },
        tarball_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    )
)
