"""Writing files whole: a temporary file in the same folder, then a rename (private)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (ending in ``suffix``: a writer may pick its format
    from it), then rename it to ``path``, so that ``path`` is never half-written; the file gets the permissions of
    a plainly created one (not mkstemp's 0600). Returns ``path``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=suffix, dir=path.parent)  # short: a long
    # name stays within the file system's limit
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def itk_header(path: str | os.PathLike, dim: int = 2,
               ) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` that ITK reads from the header of the image file at ``path`` (the pixel with
    index ``n`` sits at ``origin + direction @ (spacing * n)``): for a PNG its ``sCAL`` chunk, for a JPEG its
    resolution (72 dpi: a spacing of 25.4 / 72 mm). Read with SimpleITK (the header only); where SimpleITK is not
    installed or cannot read the file, or the file is not ``dim``-dimensional, ITK's defaults for a file without a
    header: origin 0, unit spacing, identity direction."""
    default = ((0.0,) * dim, (1.0,) * dim, tuple(float(i == j) for i in range(dim) for j in range(dim)))
    try:
        import SimpleITK as sitk
    except ImportError:  # pragma: no cover - SimpleITK is pinned in the lock file
        return default
    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return default
    if reader.GetDimension() != dim:
        return default
    return tuple(reader.GetOrigin()), tuple(reader.GetSpacing()), tuple(reader.GetDirection())


def write_atomic_files(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` with ``tmp`` a path of ``path``'s name in a new temporary folder beside ``path``, then
    move every file the writer made there into ``path``'s folder, ``path`` itself last, and remove the temporary
    folder (also on failure). For writers that make companion files named after the main one (MetaImage's ``.mhd``
    and ``.raw``, Analyze's ``.hdr`` and ``.img``): each file is renamed whole, and the header points at its data
    under the final name. Returns ``path``."""
    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix=".imreg-", dir=path.parent))
    try:
        write(folder / path.name)
        mask = os.umask(0)
        os.umask(mask)
        made = sorted(folder.iterdir(), key=lambda p: p.name == path.name)  # the main file last
        for p in made:
            os.chmod(p, 0o666 & ~mask)
            os.replace(p, path.parent / p.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path
