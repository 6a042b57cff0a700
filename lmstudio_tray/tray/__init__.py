"""The tray: a pure menu model and presenter, Pillow icons, and a thin pystray adapter (`app`).

Importing this package does not import pystray: that needs a display on Linux, and the menu logic
must stay testable without one.
"""
