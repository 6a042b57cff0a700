"""`python -m lmstudio_tray.emulator.lms ...` runs the fake `lms`."""

from lmstudio_tray.emulator.lms.cli import main

raise SystemExit(main())
