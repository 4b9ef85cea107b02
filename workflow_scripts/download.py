"""Fetch one external resource (an archive), verify its checksum, extract it once.

    python -m workflow_scripts.download --name musan \
        --url https://www.openslr.org/resources/17/musan.tar.gz \
        --md5 0c472d4fc0c5141eca47ad1ffeb2a7df --members musan/noise \
        --archive-dir resources/archives --out-dir resources/musan

Where the archive comes from, first found: --mirror (a folder holding archives under
their file names), then --url (http://, https:// or file://). A downloaded archive
goes to --archive-dir under a temporary name and is renamed when complete; it is
removed after extraction unless --keep-archive. The archive is checked against
--sha256 and/or --md5 before anything is extracted: a mismatch stops with the file
and both sums named, and nothing is extracted. With neither given (no published
checksum, e.g. a GitHub archive), the archive's sha256 is recorded and a warning
is logged. --local-dir links an already extracted copy instead (no checksum).

The archive is extracted into a temporary sibling of --out-dir that is renamed to
it when complete; out-dir/_download.json records the source and the sums.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

from workflow_scripts.files.archives import (
    ChecksumError,
    DownloadError,
    extract,
    link_local_dir,
    locate_archive,
    verify,
)
from workflow_scripts.files.audio import atomic_dir, atomic_write_text
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("download")

RECORD = "_download.json"


def fetch(args: argparse.Namespace) -> dict:
    """Fetch, verify and extract; returns the record written beside the data."""
    expected = {"sha256": args.sha256, "md5": args.md5}
    archive, origin, ours = locate_archive(args.url, args.mirror, args.archive_dir)
    try:
        sums = verify(archive, expected)
    except ChecksumError:
        if ours:
            archive.unlink()
        raise
    if not any(expected.values()):
        log.warning(
            "%s: no published checksum to verify against; recorded sha256 %s (set it in config to pin this file)",
            archive, sums["sha256"],
        )
    with atomic_dir(args.out_dir) as tmp:
        count = extract(archive, tmp, args.members, args.strip_top_folder)
        if count == 0:
            raise DownloadError(f"{archive}: no files extracted (members: {args.members or 'all'})")
        record = {
            "name": args.name,
            "url": args.url,
            "source": origin,
            "archive": archive.name,
            "size_bytes": archive.stat().st_size,
            "sha256": sums["sha256"],
            "md5": sums["md5"],
            "verified": sorted(kind for kind, value in expected.items() if value),
            "members": args.members,
            "strip_top_folder": args.strip_top_folder,
            "files": count,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        atomic_write_text(tmp / RECORD, json.dumps(record, indent=2) + "\n")
    log.info("%s: %d files extracted into %s", archive.name, count, args.out_dir)
    if ours and not args.keep_archive:
        archive.unlink()
    return record


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="resource name (for the record)")
    parser.add_argument("--url", help="http(s):// or file:// URL of the archive")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    parser.add_argument("--md5", default=None, help="expected md5 of the archive")
    parser.add_argument("--mirror", type=Path, default=None, help="folder with archives under their file names")
    parser.add_argument("--members", nargs="*", default=[], help="extract only these archive paths")
    parser.add_argument("--strip-top-folder", action="store_true", help="drop the archive's single top folder")
    parser.add_argument("--local-dir", type=Path, default=None, help="link this extracted copy instead")
    parser.add_argument("--archive-dir", type=Path, default=Path("resources/archives"))
    parser.add_argument("--keep-archive", action="store_true", help="keep a downloaded archive after extraction")
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    for kind, length in (("sha256", 64), ("md5", 32)):
        value = getattr(args, kind)
        if value is not None and (len(value) != length or any(c not in "0123456789abcdefABCDEF" for c in value)):
            raise ValueError(f"--{kind} {value!r}: expected {length} hexadecimal digits")
    if args.local_dir is not None:
        log.warning("%s: linking %s as it is; no checksum is verified", args.name, args.local_dir)
        link_local_dir(args.local_dir, args.out_dir)
        return 0
    if not args.url:
        raise ValueError("--url or --local-dir is required")
    fetch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
