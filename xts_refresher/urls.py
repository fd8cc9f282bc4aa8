"""URLs as the program shows and redacts them: the ``user:password@`` a URL may carry before
its host (a server behind basic authentication) is never shown, and both it and the password
are masked wherever they turn up; and whether a URL names this machine."""

from __future__ import annotations

from urllib.parse import urlsplit


def userinfo(url: str) -> str | None:
    """The ``user:password`` (or ``user``) before the host of ``url``; None when it has no
    ``@`` there. Read from the text as written, never refused: it also serves to show URLs
    a server sent."""
    _, separator, rest = url.partition("://")
    ends = [found for found in map(rest.find, "/?#") if found >= 0]
    authority = rest[: min(ends, default=len(rest))]
    if not separator or "@" not in authority:
        return None
    return authority[: authority.rindex("@")]


def without_credentials(url: str) -> str:
    """``url`` as it may be shown: without the ``user:password@`` before its host."""
    info = userinfo(url)
    if info is None:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest[len(info) + 1 :]}"


def url_credentials(url: str) -> list[str]:
    """The ``user:password`` of ``url`` and its password (the user alone when there is no
    password: then it is the secret), for redaction; [] when it has none."""
    info = userinfo(url) or ""
    password = info.partition(":")[2]
    return [part for part in (info, password) if part]


DEFAULT_PORTS = {"http": 80, "https": 443}


def broker_of(api_root: str) -> str:
    """The host of ``api_root``, with its port when that is not the scheme's default
    (``xts.b.example:3000``): how a failure names the broker it concerns. Never a user or
    password; the URL itself when it has no host."""
    try:
        parts = urlsplit(api_root)
        host, port = parts.hostname, parts.port
    except ValueError:
        return without_credentials(api_root)
    if not host:
        return without_credentials(api_root)
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        shown += f":{port}"
    return shown


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine."""
    import ipaddress  # only runs that check URLs need it

    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:  # an unbalanced [ or a bad IPv6 literal names no host at all
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is this machine too
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))
