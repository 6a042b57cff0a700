"""Tools for developing lmstudio-tray (generators of checked-in docs); the app never imports them."""
