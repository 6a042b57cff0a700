"""One question to the X server: does a system tray (XEmbed) own `_NET_SYSTEM_TRAY_S<screen>`?

Asked through libX11 with ctypes rather than python-xlib: GTK has already mapped libX11 into the tray
process, while python-xlib's `Display()` imports ~40 modules and builds keymaps (~2.8 MiB of resident
memory) for three calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def _libx11() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultScreen.argtypes = [ctypes.c_void_p]
    lib.XInternAtom.restype = ctypes.c_ulong
    lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.XGetSelectionOwner.restype = ctypes.c_ulong
    lib.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    return lib


def system_tray_owned(display: str | None) -> bool | str:
    """True/False when X answered; a string says why it could not be asked."""
    if not display:
        return "no X display (DISPLAY is not set)"
    try:
        x11 = _libx11()
    except (OSError, AttributeError) as exc:
        return f"cannot ask X: libX11 is not available ({exc})"
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        return f"cannot open X display {display}"
    try:
        screen = x11.XDefaultScreen(handle)
        atom = x11.XInternAtom(handle, f"_NET_SYSTEM_TRAY_S{screen}".encode(), 0)
        return bool(x11.XGetSelectionOwner(handle, atom))
    finally:
        x11.XCloseDisplay(handle)


__all__ = ["system_tray_owned"]
