"""DSI's settings group (``--set dsi.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.settings import at_least


@dataclass
class DsiSettings:
    semantic_c: int = at_least(32, 2, flag="children per node / leaf size of semantic docids")
