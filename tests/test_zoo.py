"""Zoo fetch: local tarballs, checksum and path-safety refusals, atomic cache, CLI."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from scout_exp.errors import UserError
from scout_exp.zoo.__main__ import main
from scout_exp.zoo.fetch import cache_root, fetch, weights_path
from scout_exp.zoo.registry import FACE_DESCRIPTOR_INPUT, ZooEntry, get_entry

MANIFEST = b'[{"paths": ["net.bin"], "weights": []}]'
WEIGHTS = bytes(range(256)) * 8


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tarball(path: Path, extra: list[tuple] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "package/README.md", b"readme")
        _add(tar, "package/model/net-weights_manifest.json", MANIFEST)
        _add(tar, "package/model/net.bin", WEIGHTS)
        for item in extra:
            _add(tar, *item)
    return path


def _entry(files: dict[str, str] | None = None, tarball_sha256: str | None = None) -> ZooEntry:
    return ZooEntry(
        name="tiny",
        description="test entry",
        npm_spec="tiny-pkg@1.0.0",
        licence="MIT",
        homepage="https://example.invalid",
        model="face_descriptor",
        input_spec=FACE_DESCRIPTOR_INPUT,
        files=files
        if files is not None
        else {
            "package/model/net-weights_manifest.json": _sha(MANIFEST),
            "package/model/net.bin": _sha(WEIGHTS),
        },
        tarball_sha256=tarball_sha256,
    )


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCOUT_EXP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "zoo"


def test_fetch_local_tarball_verifies_and_caches(tmp_path: Path, cache: Path) -> None:
    archive = _tarball(tmp_path / "pkg.tgz")
    entry = _entry(tarball_sha256=_sha(archive.read_bytes()))
    folder = fetch("tiny", tarball=archive, entry=entry)
    assert folder == cache / "tiny" == cache_root() / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["net-weights_manifest.json", "net.bin"]
    assert (folder / "net.bin").read_bytes() == WEIGHTS
    assert weights_path("tiny", entry) == folder
    # a second fetch replaces the cached copy atomically and leaves no staging folders behind
    fetch("tiny", tarball=archive, entry=entry)
    assert sorted(p.name for p in cache.iterdir()) == ["tiny"]


def test_file_checksum_mismatch_is_refused_and_nothing_cached(tmp_path: Path, cache: Path) -> None:
    archive = _tarball(tmp_path / "pkg.tgz")
    entry = _entry(files={"package/model/net.bin": _sha(b"something else")})
    with pytest.raises(UserError, match="does not match the sha256"):
        fetch("tiny", tarball=archive, entry=entry)
    assert list(cache.iterdir()) == []
    with pytest.raises(UserError, match="python -m scout_exp.zoo fetch tiny"):
        weights_path("tiny", entry)


def test_tarball_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "pkg.tgz")
    with pytest.raises(UserError, match="tarball .* does not match"):
        fetch("tiny", tarball=archive, entry=_entry(tarball_sha256="0" * 64))


@pytest.mark.parametrize(
    "member",
    [
        ("package/../../evil.txt", b"x"),
        ("/tmp/scout-exp-evil.txt", b"x"),
        ("package/model/link.bin", b"", tarfile.SYMTYPE, "/etc/passwd"),
        ("package/model/hard.bin", b"", tarfile.LNKTYPE, "package/README.md"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path: Path, cache: Path, member: tuple) -> None:
    archive = _tarball(tmp_path / "pkg.tgz", extra=[member])
    with pytest.raises(UserError, match="refusing to extract"):
        fetch("tiny", tarball=archive, entry=_entry())
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/scout-exp-evil.txt").exists()
    assert list(cache.iterdir()) == []


def test_missing_member_and_corrupt_archive(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "pkg.tgz")
    with pytest.raises(UserError, match="lacks package/model/other.bin"):
        fetch("tiny", tarball=archive, entry=_entry(files={"package/model/other.bin": _sha(b"")}))
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tarball at all")
    with pytest.raises(UserError, match="cannot read tarball"):
        fetch("tiny", tarball=bad, entry=_entry())
    with pytest.raises(UserError, match="does not exist"):
        fetch("tiny", tarball=tmp_path / "absent.tgz", entry=_entry())


def test_cached_file_tampering_is_detected(tmp_path: Path) -> None:
    entry = _entry()
    folder = fetch("tiny", tarball=_tarball(tmp_path / "pkg.tgz"), entry=entry)
    (folder / "net.bin").write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match its sha256"):
        weights_path("tiny", entry)


def test_missing_npm_gives_manual_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UserError, match=r"npm is not installed.*npm pack tiny-pkg@1.0.0.*--tarball PATH"):
        fetch("tiny", entry=_entry())


def test_registry_entry_and_unknown_name() -> None:
    entry = get_entry("face_descriptor")
    assert entry.npm_spec == "@vladmandic/face-api@1.7.15"
    assert entry.input_spec.size == 150
    assert all(len(sha) == 64 for sha in entry.files.values())
    with pytest.raises(UserError, match="unknown pretrained model 'nope'"):
        get_entry("nope")


def test_cli_list_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    entry = get_entry("face_descriptor")
    assert "face_descriptor" in out and "@vladmandic/face-api@1.7.15" in out and "MIT" in out
    assert all(sha in out for sha in entry.files.values())
    with pytest.raises(SystemExit) as exc:
        main(["fetch", "face_descriptor", "--tarball", str(tmp_path / "absent.tgz")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: tarball")
