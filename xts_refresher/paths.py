"""Where the program's files are: one resolver for every path the program or a bot reads.

Cron starts jobs in ``$HOME``, so a relative path is taken from the folder that holds
``xts_token_refresh.py``, never from the current folder. Only ``os`` is imported:
``load_token`` uses this module, and trading programs pay for every import.
"""

from __future__ import annotations

import os

APP_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def resolve(value: str) -> str:
    """``value`` as an absolute path: ``~`` and ``~user`` expanded (an unknown user's name is
    kept as written), a relative path taken from APP_DIR and tidied (no ``dir/../``).

    An absolute path is kept as written, since ``..`` after a symlink leads elsewhere than the
    text suggests.
    """
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(APP_DIR, path))
