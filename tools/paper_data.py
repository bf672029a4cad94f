r"""Fetch the paper's own images (FAIR's "hands" pair) on request, checked by their SHA-256.

The images are not redistributable, so the book never ships them and its default build never needs them. This
tool copies ``hands-R.jpg`` (reference) and ``hands-T.jpg`` (template) from the authors' public repository, at
the commit the paper's results come from, into a git-ignored folder, and checks every byte against the pinned
checksum before the file appears under its name.

``--url`` (``PAPER_DATA_URL`` in the Makefile) is the base the two file names are appended to. It may be

* an ``http://`` or ``https://`` address (a mirror of the repository's ``data`` folder);
* a ``file://`` address;
* a plain folder.

Every failure is a one-line error that names what went wrong (no network, a missing file, a wrong checksum) and
leaves nothing behind: each file is written to a temporary name in the target folder and renamed only after its
checksum matched. Files already present with the right checksum are not fetched again.

Command line::

    python -m tools.paper_data fetch [--url URL] [--dest data/paper]
    python -m tools.paper_data check [--dest data/paper]

``--sha256 NAME=HEX`` replaces a pinned checksum. It exists so that the tests can serve stand-in images from a
local folder; results computed on such files are not the paper's data, and the tool says so when it is used.

This module imports neither torch nor ``imreg_lib``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

__all__ = ["COMMIT", "DEFAULT_DEST", "DEFAULT_URL", "FILES", "PaperDataError", "check", "fetch", "sha256"]

#: The commit of the authors' repository the paper's results come from.
COMMIT = "8ae715d744cbbe13356e68477df782c0894fe9d3"
#: Where the two files live at that commit.
DEFAULT_URL = f"https://raw.githubusercontent.com/wdwatson2/ImgRegPytorchProject/{COMMIT}/data"
#: The pinned SHA-256 of each file.
FILES: dict[str, str] = {
    "hands-R.jpg": "608a8f54793a05a375d8d611a5f7196554d3ccc1d2271f3cd758cd99cb4d6e21",
    "hands-T.jpg": "33458a21ad3bc9aea49f0a704a2d99c5b1968b48e8cb1d75d3e98571ba218392",
}
#: The git-ignored folder the files are stored in, relative to the repository root.
DEFAULT_DEST = Path("data/paper")
_TIMEOUT_S = 60.0
_MAX_BYTES = 16 * 2**20  # the two JPEGs are a few kB each; anything this large is not them


class PaperDataError(RuntimeError):
    """A download or a check failed; the message says which file, where from and why."""


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _source(url: str, name: str) -> tuple[str, str]:
    """``(kind, location)`` of file ``name`` under base ``url``: kind ``"local"`` (a path) or ``"remote"``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https"):
        return "remote", url.rstrip("/") + "/" + urllib.parse.quote(name)
    if parsed.scheme == "file":
        return "local", os.path.join(urllib.request.url2pathname(parsed.path), name)
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise PaperDataError(f"PAPER_DATA_URL={url!r}: the scheme {parsed.scheme!r} is not supported; use an "
                             "http(s):// or file:// address or a plain folder")
    return "local", os.path.join(url, name)


def _copy_to(kind: str, location: str, out, name: str, url: str) -> None:
    if kind == "local":
        if not os.path.isfile(location):
            raise PaperDataError(f"{name}: not found at {location!r} (PAPER_DATA_URL={url!r} must be the folder "
                                 "that holds hands-R.jpg and hands-T.jpg)")
        with open(location, "rb") as src:
            shutil.copyfileobj(src, out)
        return
    try:
        with urllib.request.urlopen(location, timeout=_TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
            copied = 0
            for block in iter(lambda: response.read(1 << 16), b""):
                copied += len(block)
                if copied > _MAX_BYTES:
                    raise PaperDataError(f"{name}: {location} sent more than {_MAX_BYTES} bytes; not the expected "
                                         "image")
                out.write(block)
    except urllib.error.HTTPError as err:
        raise PaperDataError(f"{name}: {location} answered HTTP {err.code} ({err.reason}); check PAPER_DATA_URL "
                             f"(default {DEFAULT_URL})") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PaperDataError(f"{name}: could not download {location} ({reason}); no network? Put the two files "
                             "in a folder and pass it as PAPER_DATA_URL") from None


def _expected(checksums: Mapping[str, str] | None) -> dict[str, str]:
    expected = dict(FILES)
    for name, digest in (checksums or {}).items():
        if name not in FILES:
            raise PaperDataError(f"sha256: unknown file {name!r}; allowed: {sorted(FILES)}")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise PaperDataError(f"sha256 of {name} must be 64 lowercase hex digits, got {digest!r}")
        expected[name] = digest
    return expected


def fetch(url: str = DEFAULT_URL, dest: str | os.PathLike = DEFAULT_DEST, *,
          checksums: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Fetch both files from ``url`` into ``dest``, each checked against its SHA-256 before it is renamed.

    Parameters
    ----------
    url
        Base address or folder; ``<url>/hands-R.jpg`` and ``<url>/hands-T.jpg`` are read.
    dest
        Target folder (created if missing).
    checksums
        Replacements of :data:`FILES`' checksums (stand-in images in tests only).

    Returns
    -------
    dict
        File name to the path of the stored, verified file.

    Raises
    ------
    PaperDataError
        On an unsupported address, a missing file, a failed download or a wrong checksum. Files that were
        already verified stay; a failed file leaves nothing.
    """
    if not isinstance(url, str) or not url:
        raise PaperDataError(f"PAPER_DATA_URL must be a non-empty address or folder, got {url!r}")
    expected = _expected(checksums)
    sources = {name: _source(url, name) for name in expected}  # every address checked before any work
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stored = {}
    for name, digest in expected.items():
        target = dest / name
        if target.is_file() and sha256(target) == digest:
            stored[name] = target
            continue
        kind, location = sources[name]
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
        try:
            with os.fdopen(fd, "wb") as out:
                _copy_to(kind, location, out, name, url)
            got = sha256(tmp)
            if got != digest:
                raise PaperDataError(f"{name}: SHA-256 {got} from {location} does not match the pinned {digest}; "
                                     "the file is not the paper's image (nothing was stored)")
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # as a plain download would be, not mkstemp's 0600
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        stored[name] = target
    return stored


def check(dest: str | os.PathLike = DEFAULT_DEST, *, checksums: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The stored files, after checking that both exist with their checksums.

    Raises
    ------
    PaperDataError
        Naming each missing or altered file and the command that fetches it.
    """
    expected = _expected(checksums)
    dest = Path(dest)
    problems = []
    for name, digest in expected.items():
        path = dest / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256(path) != digest:
            problems.append(f"{name} has another SHA-256 than the pinned {digest}")
    if problems:
        raise PaperDataError(f"{dest}: {'; '.join(problems)}; run `make paper-data` (PAPER_DATA_URL=<folder or "
                             "address> for a mirror)")
    return {name: dest / name for name in expected}


def _checksum_args(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        name, sep, digest = item.partition("=")
        if not sep:
            raise PaperDataError(f"--sha256 must be NAME=HEX, got {item!r}")
        out[name] = digest.lower()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.paper_data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("fetch", "check"):
        p = sub.add_parser(command)
        p.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="target folder (default: %(default)s)")
        p.add_argument("--sha256", action="append", metavar="NAME=HEX",
                       help="replace a pinned checksum (stand-in images in tests only)")
        if command == "fetch":
            p.add_argument("--url", default=DEFAULT_URL, help="base address or folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        checksums = _checksum_args(args.sha256)
        if args.command == "fetch":
            url = args.url or DEFAULT_URL  # an empty PAPER_DATA_URL means the default
            stored = fetch(url, args.dest, checksums=checksums)
        else:
            stored = check(args.dest, checksums=checksums)
    except PaperDataError as err:
        print(f"paper-data: {err}", file=sys.stderr)
        return 1
    if checksums:
        print("paper-data: checksums overridden: these are stand-in images, not the paper's data", file=sys.stderr)
    for path in stored.values():
        print(f"{path}  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
