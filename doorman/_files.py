"""Files that hold secrets (the SQLite database, the epoch files beside it): owner only.

``private`` takes group and other permissions off a file that has any, and
says so once on the ``doorman.security`` logger: a database readable by other
users of the machine gives away password hashes and, unless ``DOORMAN_SECRET``
is set, the secret that signs cookies.
"""

from __future__ import annotations

import logging
import os
import stat

__all__ = ["private"]

log = logging.getLogger("doorman.security")
_told: set[str] = set()


def private(path: str, descriptor: int | None = None) -> None:
    """Make ``path`` (open as ``descriptor``, if given) readable by its owner alone."""
    try:
        found = os.fstat(descriptor) if descriptor is not None else os.stat(path)
        mode = stat.S_IMODE(found.st_mode)
        if not mode & 0o077:
            return
        if descriptor is not None:
            os.fchmod(descriptor, mode & 0o700)
        else:
            os.chmod(path, mode & 0o700)
        log.warning("%s was open to other users (mode %o): now %o", path, mode, mode & 0o700)
    except FileNotFoundError:
        pass
    except OSError as error:  # not ours to change, say: it still works, so only say so, once
        if path not in _told:
            _told.add(path)
            log.warning("cannot make %s private to its owner: %s", path, error.strerror)
