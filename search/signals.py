"""Signal receivers of the search app (connected in SearchConfig.ready)."""

from __future__ import annotations
