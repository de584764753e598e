"""Database URLs carry passwords: how the monitoring code shows a URL, an error or an answer
without one. A URL is shown only as ``redact_url`` renders it (SQLAlchemy's own masking, then
a pattern pass for what it cannot parse); free text (a driver's error, a traceback) goes
through ``hide_passwords`` with the URL's own password in both spellings."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

# scheme://user:password@ -> scheme://user:***@ (up to the last @ of the token, so a password
# holding a raw @ is hidden whole); and key=value credentials as libpq spells them
PASSWORD_IN_URL = re.compile(
    r"(?P<head>(?:\b[A-Za-z][A-Za-z0-9+.-]*)?://[^:/?#@\s'\"]*:)[^\s'\"]*@"
)
RAW_PASSWORD = re.compile(r"://[^:/?#@\s]*:(\S*)@")  # as given in a URL, percent-encoded
PASSWORD_SETTING = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)[^\s'\",;]+", re.I)
HIDDEN = "***"


class PredictionLogError(RuntimeError):
    """The prediction log could not be opened or read; the message never holds a password."""


def redact_url(url: str) -> str:
    """The URL as it may be shown: its password as ``***``."""
    try:  # then the pattern too: a raw @ in a password leaves SQLAlchemy its tail as the host
        return hide_passwords(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a URL SQLAlchemy parses: hide whatever looks like a password
        return hide_passwords(url)


def url_secrets(url: str) -> tuple[str, ...]:
    """The URL's password, as given (percent-encoded) and decoded: what must never be shown."""
    secrets = {password for password in RAW_PASSWORD.findall(url) if password}
    try:
        password = sa.engine.make_url(url).password
    except Exception:
        password = None
    if password:
        secrets.add(str(password))
    return tuple(sorted(secrets, key=len, reverse=True))  # longest first: no partial leftovers


def hide_passwords(text: str, *secrets: str) -> str:
    """``text`` with every ``scheme://user:password@`` and ``password=…`` shown as ``***``, and
    every one of ``secrets`` replaced wherever it appears."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, HIDDEN)
    text = PASSWORD_IN_URL.sub(rf"\g<head>{HIDDEN}@", text)
    return PASSWORD_SETTING.sub(rf"\g<head>{HIDDEN}", text)


def redact_credentials(value: Any) -> Any:
    """A JSON-like value (``GET /model``'s answer) with every password in its strings hidden."""
    if isinstance(value, str):
        return hide_passwords(value)
    if isinstance(value, Mapping):
        return {key: redact_credentials(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_credentials(item) for item in value]
    return value


@contextmanager
def redacted_errors(url: str, what: str) -> Iterator[None]:
    """Any error inside as a ``PredictionLogError`` whose message shows the redacted URL and
    no password, and without the original (whose message or traceback might show it)."""
    try:
        yield
    except Exception as error:
        detail = hide_passwords(f"{type(error).__name__}: {error}", *url_secrets(url))
        raise PredictionLogError(f"prediction log {redact_url(url)} {what}: {detail}") from None
