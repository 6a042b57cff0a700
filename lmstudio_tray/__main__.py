from lmstudio_tray.cli import main

raise SystemExit(main())
