"""`lmstudio-tray emulator`: listed here for `--help`; `cli.main` hands its arguments to the emulator."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "emulator",
        help="run a fake LM Studio on 127.0.0.1 (demos, plugin development); see `emulator --help`",
        add_help=False,
    )
