"""Usage and performance analytics: a local SQLite store fed from the core's bus, reports, suggestions.

A surface on top of the core (the core never imports it). Entry points: `attach_analytics(core)`,
`analytics_for(core)`, `tips_for(core, model)`, `StoreInsights` when it is off; reports in `reports`,
suggestions in `suggestions`. The endpoint sees it only as the core's `UsageInsights` (`core/ports.py`).
"""

from lmstudio_tray.analytics.service import Analytics, StoreInsights, analytics_for, attach_analytics, tips_for

__all__ = ["Analytics", "StoreInsights", "analytics_for", "attach_analytics", "tips_for"]
