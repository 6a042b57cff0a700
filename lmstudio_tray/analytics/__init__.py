"""Usage and performance analytics: a local SQLite store fed from the core's bus, reports, suggestions.

A surface on top of the core (the core never imports it). Entry points: `attach_analytics(core)`,
`analytics_for(core)`, `tips_for(core, model)`; reports in `reports`, suggestions in `suggestions`.
"""

from lmstudio_tray.analytics.service import Analytics, analytics_for, attach_analytics, tips_for

__all__ = ["Analytics", "analytics_for", "attach_analytics", "tips_for"]
