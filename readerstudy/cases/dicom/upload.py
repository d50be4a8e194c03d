"""Uploaded zip files of DICOM exams: unpacked safely into a private staging folder that lives until the
import is confirmed or discarded (or a day has passed).

Refused, with the entry named: absolute paths (``/x``, ``C:x``), ``..`` components, links and other
non-regular entries, encrypted entries, and more unpacked bytes than the limit (counted while writing, not
taken from the zip's own claims, so a zip bomb stops at the limit).
"""

from __future__ import annotations

import re
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

STAGING_FOLDER = "liverread-dicom-uploads"
STAGING_LIFETIME_S = 86400
"""Staged uploads older than this (s) are removed when the next upload arrives."""
TOKEN = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload that is refused, with the reason."""


def staging_root() -> Path:
    root = Path(tempfile.gettempdir()) / STAGING_FOLDER
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def new_staging() -> tuple[str, Path]:
    """A fresh private folder for one upload (its random token and path); stale ones are removed first."""
    root = staging_root()
    for old in root.iterdir():
        if time.time() - old.stat().st_mtime > STAGING_LIFETIME_S:
            shutil.rmtree(old, ignore_errors=True)
    token = secrets.token_hex(16)
    folder = root / token
    folder.mkdir(mode=0o700)
    return token, folder


def staging(token: str) -> Path | None:
    """The staging folder of ``token``, or None when the token is malformed or its folder is gone."""
    if not TOKEN.match(token or ""):
        return None
    folder = staging_root() / token
    return folder if folder.is_dir() else None


def discard(token: str) -> None:
    folder = staging(token)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _entry_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UploadError(f"{name}: links are not accepted")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: the zip says nothing of the type
        raise UploadError(f"{name}: only files and folders are accepted")
    if info.flag_bits & 0x1:
        raise UploadError(f"{name}: encrypted entries are not accepted")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise UploadError(f"{name}: absolute paths and '..' are not accepted")
    return path


def unpack_zip(upload, destination: Path, max_bytes: int) -> int:
    """Unpack the zip file object ``upload`` into ``destination`` (every entry checked before any is
    written); returns the bytes written. UploadError names the refused entry; on error ``destination`` is
    left empty."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(f"not a zip file ({exc})") from None
    with archive:
        entries = [(info, _entry_path(info)) for info in archive.infolist()]
        written = 0
        try:
            for info, path in entries:
                if info.is_dir() or not path.parts:
                    continue
                target = destination.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("xb") as sink:
                    while chunk := source.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UploadError(f"the unpacked files exceed the limit of {max_bytes:,} bytes")
                        sink.write(chunk)
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
            _empty(destination)
            raise UploadError(f"the zip file is corrupt ({exc})") from None
        except UploadError:
            _empty(destination)
            raise
    return written


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
