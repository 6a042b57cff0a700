"""Usage and performance analytics: a local SQLite store fed from the core's bus, reports, suggestions.

A surface on top of the core (the core never imports it). Entry points: `attach_analytics(core)` (or
`Analytics` for the composition root), `StoreInsights` when it is off; reports in `reports`, suggestions
in `suggestions`. Other surfaces see it only as the core's `UsageInsights` (`core/ports.py`).
"""

from lmstudio_tray.analytics.service import Analytics, StoreInsights, attach_analytics

__all__ = ["Analytics", "StoreInsights", "attach_analytics"]
