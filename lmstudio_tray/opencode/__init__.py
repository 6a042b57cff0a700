"""The OpenCode plugin (lmstudio-tray.ts) and its installer."""
