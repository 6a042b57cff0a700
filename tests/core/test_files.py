"""core.files: the one atomic writer, its guarantees, and that every app writer goes through it."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

import lmstudio_tray
from lmstudio_tray.core.support import files
from lmstudio_tray.core.support.endpoint_file import EndpointInfo, write_endpoint
from lmstudio_tray.core.support.files import atomic_write, atomic_write_bytes, atomic_writer, temp_glob
from lmstudio_tray.diagnostics.export import ExportError, write_zip


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(temp_glob(path)))


def test_a_failure_mid_write_keeps_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    atomic_write(path, "old = 1\n")
    with pytest.raises(RuntimeError, match="disk died"), atomic_writer(path) as fh:
        fh.write(b"new = ")
        assert leftovers(path), "the new content goes to a temporary file, not into the target"
        raise RuntimeError("disk died")
    assert path.read_text() == "old = 1\n"
    assert leftovers(path) == []


def test_the_temporary_file_sits_next_to_the_target_and_is_private_until_committed(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "endpoint.json"
    old_umask = os.umask(0o022)
    try:
        with atomic_writer(path, mode=0o644) as fh:
            fh.write(b"{}")
            (tmp,) = path.parent.glob(temp_glob(path))  # same directory: the rename cannot cross file systems
            if os.name != "nt":
                assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
            assert not path.exists()
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"{}"
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.skipif(os.name == "nt", reason="POSIX mode bits")
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_the_final_mode_is_the_one_asked_for_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "f"
    old_umask = os.umask(0o077)
    try:
        atomic_write_bytes(path, b"x", mode)
        atomic_write(path, "y", mode)  # replacing keeps it too
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text() == "y"


def test_text_is_utf8_with_unix_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write(path, "ä\nb\n")
    assert path.read_bytes() == "ä\nb\n".encode()


def test_a_rename_that_fails_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep").write_text("kept")
    with pytest.raises(OSError):
        atomic_write(target, "a file cannot replace a directory")
    assert (target / "keep").read_text() == "kept"
    assert leftovers(target) == []


# ---- Windows: renaming onto a file another process has open ---------------------------------------------


class OpenElsewhere:
    """os.replace as Windows does it while another process keeps the target open for `busy` attempts."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.attempts = 0

    def __call__(self, src: str | Path, dst: Path) -> None:
        self.attempts += 1
        if self.attempts <= self.busy:
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(dst))
        os.replace(src, dst)


def test_on_windows_a_target_held_open_by_a_reader_is_replaced_once_the_reader_lets_go(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "config.toml"
    src.write_text("new")
    dst.write_text("old")
    rename, waits = OpenElsewhere(busy=3), list[float]()
    files.replace(src, dst, windows=True, rename=rename, sleep=waits.append)
    assert dst.read_text() == "new"
    assert rename.attempts == 4
    assert waits == [0.01, 0.02, 0.04]  # backing off, not spinning


def test_on_windows_a_target_that_stays_open_fails_with_the_error_after_the_retries(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "config.toml"
    src.write_text("new")
    dst.write_text("old")
    rename, waits = OpenElsewhere(busy=1000), list[float]()
    with pytest.raises(PermissionError, match="used by another process"):
        files.replace(src, dst, windows=True, rename=rename, sleep=waits.append)
    assert rename.attempts == files.REPLACE_RETRIES + 1
    assert sum(waits) < 3.0  # gives up: a writer never hangs on a file someone keeps open
    assert dst.read_text() == "old"


def test_elsewhere_a_permission_error_is_not_retried(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "dst"
    src.write_text("new")
    rename, waits = OpenElsewhere(busy=1), list[float]()
    with pytest.raises(PermissionError):
        files.replace(src, dst, windows=False, rename=rename, sleep=waits.append)
    assert rename.attempts == 1 and waits == []


# ---- the writers ----------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX mode bits")
def test_the_endpoint_file_is_written_atomically_and_private(tmp_path: Path) -> None:
    target = tmp_path / "state" / "endpoint.json"
    write_endpoint(EndpointInfo(url="http://127.0.0.1:1", token="t1", pid=os.getpid()), target)
    write_endpoint(EndpointInfo(url="http://127.0.0.1:2", token="t2", pid=os.getpid()), target)
    assert json.loads(target.read_text())["token"] == "t2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert leftovers(target) == []


def test_a_refused_export_leaves_an_earlier_export_untouched(tmp_path: Path) -> None:
    target = tmp_path / "debug.zip"
    write_zip(target, {"a.txt": "first"}, ["secret-value"])
    before = target.read_bytes()
    with pytest.raises(ExportError, match="a secret survived"):
        write_zip(target, {"a.txt": "oops secret-value"}, ["secret-value"])
    assert target.read_bytes() == before
    assert leftovers(target) == []


# Writes that bypass core.files: renames, temporary files, in-place writes and files opened for writing.
_WRITE_CALLS = {"replace", "rename", "renames", "mkstemp", "NamedTemporaryFile", "write_text", "write_bytes"}
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}
# core.files is the writer; the emulator stands in for LM Studio, imports nothing of the app and keeps one
# writer of its own (emulator/state/home.py).
_WRITERS = {Path("core/support/files.py"), Path("emulator/state/home.py")}


def _writes(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in ("replace", "rename") and not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                               and func.value.id == "os"):
        return False  # str.replace and friends
    if name in _WRITE_CALLS:
        return True
    if name in ("open", "fdopen"):
        modes = [a.value for a in [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "mode")]
                 if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        flags = {n.attr for a in node.args[1:2] for n in ast.walk(a) if isinstance(n, ast.Attribute)}
        return any(set(m) & set("wax+") for m in modes) or bool(flags & _WRITE_FLAGS)
    return False


def test_every_app_writer_goes_through_core_files() -> None:
    root = Path(lmstudio_tray.__file__).parent
    found = []
    for source in sorted(root.rglob("*.py")):
        rel = source.relative_to(root)
        if rel in _WRITERS:
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        found += [f"{rel}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Call) and _writes(n)]
    assert found == [], "write through lmstudio_tray.core.support.files (atomic_write / atomic_writer) instead"


def test_the_emulator_keeps_a_single_writer_and_imports_nothing_of_the_app() -> None:
    root = Path(lmstudio_tray.__file__).parent / "emulator"
    for source in root.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.startswith("lmstudio_tray.") and not m.startswith(
            "lmstudio_tray.emulator")}, source
    home = ast.parse((root / "state" / "home.py").read_text(encoding="utf-8"))
    (writer,) = [n for n in home.body if isinstance(n, ast.FunctionDef) and n.name == "write_json"]

    def atomic(tree: ast.AST) -> set[int]:  # temporary files and renames: what an atomic writer is made of
        return {id(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and _writes(n)
                and isinstance(n.func, ast.Attribute) and n.func.attr in ("mkstemp", "replace", "rename")}

    assert atomic(home) == atomic(writer) and len(atomic(writer)) == 2
    for source in root.rglob("*.py"):
        if source.name != "home.py":
            assert not atomic(ast.parse(source.read_text(encoding="utf-8"))), source
