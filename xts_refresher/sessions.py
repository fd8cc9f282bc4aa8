"""The two XTS sessions a refresh logs in to, and every fact about each, in one table.

Settings, the XTS client, the token store, the commands and ``load_token`` all read this
table, so no other module says "if interactive … else". Only built-ins and ``types`` are
imported: ``load_token`` uses it.
"""

from __future__ import annotations

from types import MappingProxyType

from .values import Frozen


class Session(Frozen):
    """One kind of XTS session: how people and settings name it, where its token is kept, and
    the paths that log in to it and check its token.

    ``base_variable`` names the setting that moves its API paths (None: they are fixed at
    ``default_base``); ``login_path`` and ``check_path`` follow the base. ``extra_fields`` are
    the login answer's fields the token file keeps, each with its default.
    """

    __slots__ = (
        "base_variable",
        "check_path",
        "check_user_parameter",
        "default_base",
        "default_file",
        "extra_fields",
        "key_variable",
        "label",
        "login_path",
        "name",
        "one_login_per_app_key",
        "path_variable",
        "secret_variable",
        "title",
        "user_id_has_suffix",
        "uses_hostlookup",
    )
    name: str
    label: str
    title: str
    key_variable: str
    secret_variable: str
    path_variable: str
    default_file: str
    base_variable: str | None
    default_base: str
    login_path: str
    check_path: str
    check_user_parameter: str | None
    extra_fields: tuple[tuple[str, object], ...]
    uses_hostlookup: bool
    one_login_per_app_key: bool
    user_id_has_suffix: bool

    def __init__(self, **facts: object) -> None:
        missing = set(self.__slots__) - set(facts)
        if missing:
            raise TypeError(f"Session needs {sorted(missing)}")
        self._set(**facts)


INTERACTIVE = Session(
    name="interactive",
    label="interactive",
    title="XTS token",
    key_variable="XTS_INTERACTIVE_API_KEY",
    secret_variable="XTS_INTERACTIVE_API_SECRET",  # noqa: S106 - a setting's name
    path_variable="XTS_TOKEN_FILE",
    default_file="xts_store_token.json",
    base_variable=None,
    default_base="/interactive",
    login_path="/user/session",
    # Cheap, and allowed all day (some brokers allow user/profile about once a day).
    check_path="/user/balance",
    check_user_parameter="clientID",
    # A bot on the official SDK resumes with token, userID and isInvestorClient.
    extra_fields=(("isInvestorClient", None), ("clientCodes", [])),
    uses_hostlookup=True,
    one_login_per_app_key=False,
    # The login answers XTS_USER_ID itself.
    user_id_has_suffix=False,
)
MARKETDATA = Session(
    name="marketdata",
    label="market-data",
    title="XTS market-data token",
    key_variable="XTS_MARKETDATA_API_KEY",
    secret_variable="XTS_MARKETDATA_API_SECRET",  # noqa: S106 - a setting's name
    path_variable="XTS_MARKETDATA_TOKEN_FILE",
    default_file="xts_marketdata_token.json",
    base_variable="XTS_MARKETDATA_PATH",
    default_base="/apimarketdata",
    login_path="/auth/login",
    check_path="/config/clientConfig",
    check_user_parameter=None,
    extra_fields=(("application_expiry_date", None),),
    uses_hostlookup=False,
    # A new market-data login ends the previous market-data session of the same app key.
    one_login_per_app_key=True,
    # The login answers the user with a suffix: CK68_BEBAFF... is CK68.
    user_id_has_suffix=True,
)
# In the order a refresh logs in and status reports.
SESSIONS = MappingProxyType({session.name: session for session in (INTERACTIVE, MARKETDATA)})
