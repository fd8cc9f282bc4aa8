"""What ``refresh``, ``status`` and ``check-config`` all check, and how they word time.

The setup warnings every run repeats, whether a stored token belongs to these settings, and
durations in human units.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .sessions import SESSIONS, Session
from .settings import Settings, env_file_is_exposed, without_credentials
from .store import StoredToken

DEFAULT_RENEW_BEFORE = 2 * 3600.0

if TYPE_CHECKING:
    from .notify import Log


def format_duration(seconds: float) -> str:
    """``seconds`` in human units: ``23h 59m``, ``12m``, ``45s``, ``2d 3h``."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def base_user(user_id: str) -> str:
    """The user part of an XTS userID (market data appends ``_<suffix>``), upper-cased."""
    return user_id.split("_", 1)[0].strip().upper()


def is_user(session: Session, user_id: str, wanted: str) -> bool:
    """Whether ``user_id``, as ``session``'s login answered it, is the user ``wanted`` (any
    case). Only a market-data userID may carry a ``_<suffix>``: an interactive ``CK68_EVIL``
    is not CK68."""
    if session.user_id_has_suffix:
        return base_user(user_id) == base_user(wanted)
    return user_id.strip().upper() == wanted.strip().upper()


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine."""
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


def warn_about_setup(settings: Settings, log: Log) -> None:
    """The warnings every run repeats until the operator fixes them."""
    for env_file in filter(None, (settings.env_file, settings.shared_env_file)):
        if env_file_is_exposed(env_file):
            log.warning("⚠ %s can be read by other users: run `chmod 600 %s`.", env_file, env_file)
    if not settings.verify_ssl and settings.ca_bundle is None:
        log.warning(
            "⚠ TLS certificate checks are OFF (XTS_VERIFY_SSL=false): anyone on the "
            "network path can read your API secret. Prefer XTS_CA_BUNDLE."
        )
    urls = {"XTS_API_ROOT": settings.api_root, "XTS_HOSTLOOKUP_URL": settings.hostlookup_url}
    if settings.telegram is not None:
        urls["TELEGRAM_API_URL"] = settings.telegram.api_url
    for name, url in urls.items():
        if url and url.lower().startswith("http://") and not is_loopback_url(url):
            log.warning(
                "⚠ %s uses plain http: secrets cross the network unencrypted. Use https.", name
            )


def foreign_token(settings: Settings, stored: StoredToken) -> tuple[str, str] | None:
    """The state and reason when ``stored`` belongs to another user or API root, else None.

    With host lookup the interactive root is whatever the lookup assigned, so it is not compared.
    """
    session = SESSIONS[stored.session]
    if settings.user_id and not is_user(session, stored.user_id, settings.user_id):
        return "wrong-user", (
            f"the stored token is for user {stored.user_id or 'unknown'}, "
            f"not XTS_USER_ID={settings.user_id}"
        )
    assigned_root = session.uses_hostlookup and settings.hostlookup_url
    if not assigned_root and stored.api_root.rstrip("/") != settings.api_root:
        stored_root = without_credentials(stored.api_root) or "an unknown API root"
        return "wrong-root", (
            f"the stored token is for {stored_root}, "
            f"not XTS_API_ROOT={without_credentials(settings.api_root)}"
        )
    return None
