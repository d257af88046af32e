"""Outputs that appear complete or not at all, and checksums.

A directory output is written into a staging directory beside it (``.NAME.staging-*``) and renamed
into place; the previous output stays until the new one is complete. Staging debris that an
interrupted run (SIGKILL, power loss) left behind is removed by the next write to the same path.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputError", "staged_directory", "atomic_file", "sha256_bytes", "sha256_file"]


class OutputError(ValueError):
    """An output path that cannot be written as asked; the message names the path."""


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    return sha256_bytes(Path(path).read_bytes())


def _staging_prefix(out):
    return f".{out.name}.staging-"


def _remove_debris(out):
    """Remove the staging directories of ``out`` that an interrupted earlier run left behind; a
    previous output moved aside by a run killed just before its rename is put back first."""
    for debris in sorted(out.parent.glob(_staging_prefix(out) + "*")):
        if debris.name.endswith(".previous") and not out.exists():
            os.replace(debris, out)
        elif debris.is_dir():
            shutil.rmtree(debris, ignore_errors=True)
        else:
            debris.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_directory(out_dir):
    """Yield an empty staging directory beside ``out_dir``; on success it replaces ``out_dir`` (the
    previous one is kept until the new one is in place), on any failure it is removed.

    Raises
    ------
    OutputError
        If ``out_dir`` exists and is not a directory (a regular file is never replaced by a directory).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a directory; choose another output path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_debris(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(out_dir), dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp's 0700 would make the output private
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = tmp.with_name(tmp.name + ".previous")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside the file ``path`` (same suffix, so writers that go by the
    extension work); on success it replaces ``path`` with the permissions of a newly created file,
    on any failure it is removed: the file appears complete or not at all."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(path), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp's 0600 would make the output private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
