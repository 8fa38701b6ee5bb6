"""TaskFlow's ``conf`` arguments: a URL, or a dict holding one under a key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def url_and_options(conf: str | Mapping[str, Any], key: str, what: str,
                    accept: Callable[[str], bool], refusal: Callable[[object], str],
                    ) -> tuple[str, dict[str, Any]]:
    """``(url, options)`` of ``conf``: the URL itself, or the dict's ``key`` (which ``accept``
    must take) with the dict's other keys as options.

    Raises:
        ValueError: the dict's ``key`` is missing or refused (``refusal(value)`` says why).
        TypeError: ``conf`` is neither a URL nor a dict.
    """
    if isinstance(conf, str):
        return conf, {}
    if isinstance(conf, Mapping):
        options = dict(conf)
        url = options.pop(key, None)
        if isinstance(url, str) and accept(url):
            return url, options
        raise ValueError(refusal(url))
    raise TypeError(f"{what} conf must be a URL or a dict, not {type(conf).__name__}")
