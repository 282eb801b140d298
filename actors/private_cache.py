"""Where a node keeps the models it downloaded, and when a file there may be trusted.

The weights a job loads decide every score, so another account on the node must not be able
to plant or swap them. The default cache is per user, `$XDG_CACHE_HOME/vrscore/models` (else
`~/.cache/vrscore/models`), created 0700; a cache folder (the default or one given) that is not
the job user's own, or that group or others may write, is refused. Inside it, a file or folder
is trusted only if it is a plain file or folder (no symlink) owned by the job user and writable
by no one else; anything else is downloaded again. What vrscore writes there is 0600 (files)
or 0700 (folders), whatever the umask.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from schemas.user_error import UserError

CACHE_ENV = "VRSCORE_MODEL_CACHE"  # a node-wide default for ModelConfig.cache_dir


class UnsafeCacheError(UserError):
    """The model cache folder could be written by someone other than the job's user."""


def default_cache_dir() -> str:
    """$VRSCORE_MODEL_CACHE, else the user's XDG cache folder + vrscore/models."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vrscore", "models")


def owned_privately(st: os.stat_result, uid: int) -> bool:
    """Whether a file or folder with this stat result is `uid`'s alone to change."""
    return st.st_uid == uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_root(cache_dir: str) -> Path:
    """`cache_dir`, created 0700 if missing; UnsafeCacheError when it is not this user's own."""
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = root.stat()  # a symlinked cache folder: the folder it names must be ours
    if not stat.S_ISDIR(st.st_mode) or not owned_privately(st, os.getuid()):
        who = "owned by another user" if st.st_uid != os.getuid() else "writable by group or others"
        raise UnsafeCacheError(f"model cache {root} is {who}, so the weights there cannot be trusted; use a "
                               "folder of your own (chmod 700) as model.cache_dir or $VRSCORE_MODEL_CACHE")
    return root


def trusted(path: Path, *, folder: bool = False) -> bool:
    """Whether `path` is a plain file (or folder) of this user's, writable by no one else."""
    try:
        st = path.lstat()
    except OSError:
        return False
    kind = stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)
    return kind and owned_privately(st, os.getuid())


def private_opener(path: str, flags: int) -> int:
    """For `open(..., opener=private_opener)`: a file created 0600 whatever the umask."""
    return os.open(path, flags, 0o600)
