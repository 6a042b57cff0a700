"""The command groups of `lmstudio-tray`, one module each: `register(subparsers)` adds its commands and sets
`func` (taking the parsed args, returning an exit code) on each parser. `lmstudio_tray.cli` maps a command
word to its module (`COMMAND_HOME`), so a command imports only its own group."""
