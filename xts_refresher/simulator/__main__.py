"""``python -m xts_refresher.simulator``: serve the simulator in the foreground."""

from __future__ import annotations

from .server import main

raise SystemExit(main())
