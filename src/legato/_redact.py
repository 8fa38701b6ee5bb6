"""Masking secrets in URLs before anything prints or logs them.

Board and persistence URLs carry passwords (``redis://:pw@host``,
``postgresql://user:pw@host/db``, ``...?password=pw``). Every output, log line and error message
that shows a URL passes it (or the whole text around it) through ``redact``.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

# scheme://user:password@  (the password runs to the last "@" before a "/" or a space, as in
# urllib.parse, so an unescaped "@" inside it is masked too)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s/]*)@")
# ?password=... / &passwd=... / &sentinel_password=... query parameters (libpq, several drivers
# and the Redis board accept them)
_QUERY = re.compile(r"(?P<head>[?&](?:[a-z_]*password|passwd|pwd)=)(?P<password>[^&#\s'\"]*)",
                    re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Works on a bare URL and on any message embedding URLs (an error, a repr). A URL without a
    password is returned unchanged.
    """
    if "://" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@" if m["password"] else m[0], text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
