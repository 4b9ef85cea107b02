"""Archives of external resources: fetched (mirror folder, http(s) with resume, or file://),
checked against their published sums, and extracted member by member.

A download goes to a temporary name that is renamed when complete; extraction refuses
member paths that would leave the destination folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "genda-pse dataset download"


class ChecksumError(ValueError):
    """An archive whose checksum differs from the expected one."""


class DownloadError(RuntimeError):
    """An archive that could not be fetched."""


def archive_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"{url}: the URL names no file")
    return name


def file_sums(path: Path) -> dict[str, str]:
    """sha256 and md5 of a file, in one pass."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=f"checksum {path.name}",
                                     mininterval=5.0) as progress:
        while block := f.read(CHUNK):
            sha256.update(block)
            md5.update(block)
            progress.update(len(block))
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def verify(path: Path, expected: dict[str, str | None]) -> dict[str, str]:
    """The file's sums; raises ChecksumError naming the file and both sums on a mismatch."""
    sums = file_sums(path)
    for kind, value in expected.items():
        if value and sums[kind] != value.lower():
            raise ChecksumError(
                f"{path}: {kind} checksum mismatch: expected {value.lower()}, got {sums[kind]}"
                " (a corrupt or different file: delete it and download again, or fix the checksum in config)"
            )
    return sums


def fetch_http(url: str, dest: Path) -> None:
    """Download `url` to `dest` (atomically), resuming a partial download of an earlier try."""
    part = dest.with_name(f".{dest.name}.part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except Exception as exc:  # urllib raises several types
        raise DownloadError(f"{url}: cannot download ({exc})") from exc
    with response:
        if offset and response.status != 206:
            log.info("%s: the server does not resume; starting over", url)
            offset = 0
        total = response.length + offset if response.length is not None else None
        with open(part, "ab" if offset else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=f"download {dest.name}",
            mininterval=5.0,
        ) as progress:
            while block := response.read(CHUNK):
                f.write(block)
                progress.update(len(block))
    os.replace(part, dest)


def locate_archive(url: str, mirror: Path | None, archive_dir: Path) -> tuple[Path, str, bool]:
    """(archive path, where it came from, whether it is a download of ours that may be removed)."""
    name = archive_name(url)
    if mirror is not None:
        candidate = mirror / name
        if candidate.is_file():
            return candidate, f"mirror {candidate}", False
        log.info("%s: not in mirror %s; using the URL", name, mirror)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_file():
            raise DownloadError(f"{url}: file not found ({path})")
        return path, url, False
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"{url}: unsupported URL scheme {parsed.scheme!r} (use http, https or file)")
    dest = archive_dir / name
    if dest.is_file():
        log.info("%s: already downloaded; verifying it", dest)
    else:
        fetch_http(url, dest)
    return dest, url, True


# ---- extraction ---------------------------------------------------------------


def safe_parts(name: str, archive: Path) -> tuple[str, ...]:
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise DownloadError(f"{archive}: unsafe member path {name!r}")
    return parts


class Layout:
    """Where each archive member goes: the selected members, less the top folder if stripped."""

    def __init__(self, archive: Path, dest: Path, members: list[str], strip_top: bool) -> None:
        self.archive, self.dest = archive, dest
        self.members = [m.strip("/") for m in members]
        self.strip_top = strip_top
        self.top: str | None = None

    def target(self, name: str) -> Path | None:
        parts = safe_parts(name, self.archive)
        if self.strip_top:
            if self.top is None:
                self.top = parts[0]
            elif parts[0] != self.top:
                raise DownloadError(
                    f"{self.archive}: --strip-top-folder, but the archive has more than one top-level"
                    f" entry ({self.top!r}, {parts[0]!r})"
                )
            parts = parts[1:]
            if not parts:
                return None
        return self.dest.joinpath(*parts) if selected("/".join(parts), self.members) else None


def selected(name: str, members: list[str]) -> bool:
    return not members or any(name == m or name.startswith(m + "/") for m in members)


def extract(archive: Path, dest: Path, members: list[str], strip_top: bool) -> int:
    """Extract the selected members of a zip or tar archive into `dest`; returns the file count."""
    layout = Layout(archive, dest, members, strip_top)
    count = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in tqdm(zf.infolist(), desc=f"extract {archive.name}", mininterval=5.0):
                path = layout.target(info.filename)
                if path is None or info.is_dir():
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                count += 1
        return count
    if not tarfile.is_tarfile(archive):
        raise DownloadError(f"{archive}: not a zip or tar archive")
    with tarfile.open(archive) as tf, tqdm(desc=f"extract {archive.name}", unit=" files",
                                           mininterval=5.0) as progress:
        for member in tf:
            path = layout.target(member.name)
            if path is None:
                continue
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                log.warning("%s: skipping %s (not a regular file)", archive, member.name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(member) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            count += 1
            progress.update(1)
    return count


def link_local_dir(local_dir: Path, out_dir: Path) -> None:
    if not local_dir.is_dir():
        raise DownloadError(f"{local_dir}: local_dir not found")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(local_dir.resolve(), target_is_directory=True)
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
