"""The participant's files are private: the data dir 0700, the database and its companions 0600.

On a shared machine any local user could otherwise read every conversation, the memory and the placeholder
mapping. New files are created private (never widened first and narrowed later); files of an older install are
tightened at start. Only group and other bits are ever removed: nothing is loosened, and only our own names in
the data dir are touched. Windows has no POSIX modes: everything here is a no-op there.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Group and other bits: the only ones ever removed.
SHARED_BITS = 0o077
# SQLite's files beside the database (it creates them with the database file's mode).
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class LoosePath:
    path: Path
    mode: int
    expected: int

    def describe(self) -> str:
        return f"{self.path} is {self.mode:04o}, should be {self.expected:04o}"


def supported() -> bool:
    return os.name != "nt"


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents, with the default mode) with the data dir itself 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist yet, so SQLite opens it instead of creating it 0644.

    O_EXCL: only a file this call creates is opened, a new inode nobody holds a lock on, so closing the descriptor
    cannot drop an SQLite lock of this process (the rule in studyapp.store.db). SQLite gives -wal, -shm and
    -journal the database file's mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    except OSError:
        return  # a missing or unwritable dir: SQLite's open reports it, as it always did
    os.close(fd)


def open_private_for_writing(path: Path) -> int:
    """A descriptor to write ``path`` (truncated), created 0600; an existing regular file loses group/other bits."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        mode = os.fstat(fd).st_mode
        # Only a regular file: /dev/stdout or a pipe named as the output is not ours to change.
        if supported() and stat.S_ISREG(mode) and stat.S_IMODE(mode) & SHARED_BITS:
            os.fchmod(fd, stat.S_IMODE(mode) & ~SHARED_BITS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _ours(database: Path) -> list[tuple[Path, int]]:
    """The data dir and the database's files in it, each with the mode it should have."""
    files = [(database.with_name(database.name + suffix), PRIVATE_FILE_MODE) for suffix in DATABASE_SUFFIXES]
    return [(database.parent, PRIVATE_DIR_MODE), *files]


def _loose(path: Path, expected: int) -> LoosePath | None:
    # The data dir may be a symlink (the user's choice) and is followed; a symlink in it is not ours to follow.
    try:
        st = path.stat() if expected == PRIVATE_DIR_MODE else path.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & SHARED_BITS:
        return None
    return LoosePath(path, stat.S_IMODE(st.st_mode), expected)


def loose_paths(database: Path) -> list[LoosePath]:
    """The database's files and its data dir where group or other users may read or enter (none on Windows)."""
    if not supported():
        return []
    found = [_loose(path, expected) for path, expected in _ours(database)]
    return [loose for loose in found if loose is not None]


def tighten(database: Path) -> list[LoosePath]:
    """Remove group/other bits from our loose paths; the ones changed, as they were (chmod by path opens nothing)."""
    tightened: list[LoosePath] = []
    for loose in loose_paths(database):
        try:
            os.chmod(loose.path, loose.mode & ~SHARED_BITS)
        except OSError:
            continue  # not ours to change (another owner): doctor still reports it
        tightened.append(loose)
    return tightened


def notice(tightened: list[LoosePath]) -> str:
    """What the participant is told, once, after an older install was tightened."""
    names = ", ".join(str(loose.path) for loose in tightened)
    return (f"Your studyapp files were readable by other users of this computer; only you can read them now "
            f"({names}).")
