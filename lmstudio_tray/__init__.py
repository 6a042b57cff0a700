"""lmstudio-tray: a system-tray companion for LM Studio and the endpoint its OpenCode plugin talks to."""

__version__ = "0.1.0"
APP_NAME = "lmstudio-tray"

__all__ = ["APP_NAME", "__version__"]
