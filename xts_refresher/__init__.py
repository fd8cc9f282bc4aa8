"""The XTS token refresher's parts: settings, XTS client, token store, notifications, commands.

``xts_token_refresh.py`` beside this package is the program's entry point and the home of
``load_token``; importing this package imports nothing heavy.
"""

__version__ = "1.0.0"
