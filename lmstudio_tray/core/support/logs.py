"""Logging for every entry point: JSON lines to a rotating file, plain text on the terminal, secrets redacted.

Redaction happens on the formatted line, after the message, its arguments, any `extra` fields and the
traceback were joined, so a token cannot slip through a `%r` or an exception message. What is removed:
every value handed to `register_secret` (API tokens, the endpoint token), anything after `Bearer `, URL
passwords (`http://user:PASSWORD@host`), the
values of token-like keys (`token=...`, `"api_key": "..."`), and prompt contents (`"content"`,
`"messages"`, `"prompt"`, `"system"` values of JSON-ish text, and `extra` fields with those names).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from lmstudio_tray.core.support import paths

LOG_FILE_NAME = "lmstudio-tray.log"
DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_BACKUPS = 3
REDACTED = "[redacted]"
PROMPT_REDACTED = "[prompt redacted]"
LEVELS = ("debug", "info", "warning", "error")
# Env override of the terminal format, for people who pipe stderr into a log collector.
CONSOLE_FORMAT_ENV = "LMSTUDIO_TRAY_LOG_FORMAT"
TOKEN_ENV_PREFIX = "LMSTUDIO_TRAY_TOKEN_"

# Secrets shorter than this are not redacted by value: "1" or "ok" would blank out half the log.
_MIN_SECRET_LEN = 6
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_re: re.Pattern[str] | None = None

_URL_USERINFO = re.compile(r"\b(https?://)([^/@\s:]+):([^/@\s]+)@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_KEYED = re.compile(
    r"""(?ix)
    (["']?\b(?:[a-z_]*token|api[_-]?key|apikey|password|passwd|secret|authorization)["']?\s*[:=]\s*)
    (?!\[redacted\]|"\[redacted\]"|'\[redacted\]'|bearer\s)
    (?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;}&)\]"'\\]+)
    """
)
_KEYED_HINTS = ("token", "key", "passw", "secret", "authorization")
_SECRET_KEY = re.compile(r"(?i)^(?:[a-z_]*token|api[_-]?key|apikey|password|passwd|secret|authorization)$")
_PROMPT_KEYS = ("content", "messages", "prompt", "system", "input", "instructions")
_PROMPT_KEY = re.compile(r"""(["'])(""" + "|".join(_PROMPT_KEYS) + r""")\1\s*:\s*""", re.IGNORECASE)
_REDACTED_MARK = "_lmstudio_tray_redacted"
_JSON_CACHE = "_lmstudio_tray_json"
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# ---- the secret registry ---------------------------------------------------------------------------------


def register_secret(value: str | None) -> None:
    """Never log `value` (an API token, the endpoint token). Safe to call from any thread, many times."""
    global _secret_re
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a token that contains another is removed whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def registered_secrets() -> frozenset[str]:
    """The values handed to `register_secret` so far (the debug export checks its archive against them)."""
    with _secrets_lock:
        return frozenset(_secrets)


def forget_secrets() -> None:
    """Tests only: start from an empty registry."""
    global _secret_re
    with _secrets_lock:
        _secrets.clear()
        _secret_re = None


def register_env_tokens(environ: dict[str, str] | None = None) -> None:
    """Register the value of every `LMSTUDIO_TRAY_TOKEN_*` variable of `environ` (default: the process environment) as a
    secret."""
    for name, value in (environ if environ is not None else os.environ).items():
        if name.startswith(TOKEN_ENV_PREFIX):
            register_secret(value)


# ---- redaction -------------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """`text` with every known secret, bearer token, token-like value and prompt content removed.

    A whole JSON document (a log line of ours or anyone's) is redacted value by value, so prompts and
    tokens inside JSON-escaped strings are found too, and the result is still valid JSON.
    """
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            pass
        else:
            return json.dumps(_redact_value(parsed), ensure_ascii=False)
    # Cheap substring tests first: most log lines contain none of these, and the regexes cost more.
    lower = text.lower()
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    if "bearer" in lower:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if any(hint in lower for hint in _KEYED_HINTS):
        text = _KEYED.sub(lambda m: m.group(1) + _quoted_like(m.group(0)[len(m.group(1)):]), text)
    if any(key in lower for key in _PROMPT_KEYS):
        text = _redact_prompts(text)
    return text


def _redact_value(value: Any, key: str = "") -> Any:
    if key and key.lower() in _PROMPT_KEYS:
        return PROMPT_REDACTED
    if key and _SECRET_KEY.match(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _quoted_like(value: str) -> str:
    if value[:1] in ("'", '"'):
        return value[0] + REDACTED + value[0]
    return REDACTED


def _redact_prompts(text: str) -> str:
    """Replace the value after `"content":`, `"messages":` ... by a placeholder, whatever JSON it is."""
    out: list[str] = []
    pos = 0
    for match in _PROMPT_KEY.finditer(text):
        if match.start() < pos:
            continue  # inside a value already removed
        end = _value_end(text, match.end())
        if end is None:
            continue
        out.append(text[pos:match.end()])
        out.append(json.dumps(PROMPT_REDACTED))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int | None:
    """End of the JSON-ish value starting at `start` (string, array or object); None for scalars."""
    if start >= len(text):
        return None
    opener = text[start]
    if opener in "\"'":
        i = start + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == opener:
                return i + 1
            i += 1
        return len(text)  # an unterminated string (a truncated line): drop the rest
    if opener in "[{":
        depth, i, quote = 0, start, ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(text)
    return None


class RedactingFilter(logging.Filter):
    """Redacts the message and arguments of every record before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place once (message and arguments joined, string extras, prompt-named extras); the
        record is always kept."""
        if record.__dict__.get(_REDACTED_MARK) is True:
            return True  # the file handler's filter ran first; the terminal's has nothing left to do
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we have, as text
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        record.__dict__[_REDACTED_MARK] = True
        for key in list(vars(record)):
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            if key.lower() in _PROMPT_KEYS:
                setattr(record, key, PROMPT_REDACTED)
            else:
                value = getattr(record, key)
                if isinstance(value, str):
                    setattr(record, key, redact(value))
        return True


# ---- formatters ------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, pid, thread, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line, redacted unless `RedactingFilter` cleaned it already; kept on the record,
        because the rotating handler formats each record twice."""
        # The rotating handler formats each record twice (once to decide on rollover): format once.
        cached = record.__dict__.get(_JSON_CACHE)
        if isinstance(cached, str):
            return cached
        # Behind our filter, msg and string extras are clean already; without it, clean them here.
        clean = record.__dict__.get(_REDACTED_MARK) is True
        message = record.getMessage()
        data: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message if clean else redact(message),
            "pid": record.process,
            "thread": record.threadName,
        }
        for key, value in vars(record).items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            if key.lower() in _PROMPT_KEYS:
                data[key] = PROMPT_REDACTED
            elif isinstance(value, str):
                data[key] = value if clean else redact(value)
            elif isinstance(value, (int, float, bool, type(None))):
                data[key] = value
            else:
                data[key] = redact(repr(value))
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = redact(record.stack_info)
        line = json.dumps(data, ensure_ascii=False)
        record.__dict__[_JSON_CACHE] = line
        return line


class ConsoleFormatter(logging.Formatter):
    """The terminal's line: time, level, logger and message, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The record as the terminal's line, redacted."""
        return redact(super().format(record))


# ---- setup -----------------------------------------------------------------------------------------------

_HANDLER_MARK = "_lmstudio_tray_handler"


def log_file() -> Path:
    """The log file: `lmstudio-tray.log` in the log dir."""
    return paths.log_dir() / LOG_FILE_NAME


def configure_logging(
    level: str | None = None,
    *,
    console: TextIO | None = None,
    console_level: str | None = None,
    file: Path | bool | None = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
) -> Path | None:
    """Install (or replace) our handlers on the root logger. Returns the log file, if any.

    `level` applies to the file (default info); the terminal shows `console_level`, else `level`, else
    warnings only, so one-shot commands stay quiet unless asked. `file=False` logs to the terminal only;
    a log dir that cannot be created downgrades to terminal-only with one warning instead of failing.
    """
    file_level = _level(level or "info")
    term_level = _level(console_level or level or "warning")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    redactor = RedactingFilter()
    register_env_tokens()

    stream = console if console is not None else sys.stderr
    term = logging.StreamHandler(stream)
    term.setLevel(term_level)
    want_json = os.environ.get(CONSOLE_FORMAT_ENV, "").strip().lower() == "json"
    term.setFormatter(JsonFormatter() if want_json else ConsoleFormatter())
    term.addFilter(redactor)
    _mark(term)
    handlers: list[logging.Handler] = [term]

    target: Path | None = None
    problem: str | None = None
    if file is not False:
        target = log_file() if file is True or file is None else Path(file)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            rotating = logging.handlers.RotatingFileHandler(
                target, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
            )
        except OSError as exc:
            problem = f"cannot write logs to {target} ({exc.strerror or exc}); logging to the terminal only"
            target = None
        else:
            rotating.setLevel(file_level)
            rotating.setFormatter(JsonFormatter())
            rotating.addFilter(redactor)
            _mark(rotating)
            handlers.append(rotating)

    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    for noisy in ("httpx", "httpcore", "asyncio", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if problem:
        logging.getLogger(__name__).warning(problem)
    return target


def _mark(handler: logging.Handler) -> None:
    setattr(handler, _HANDLER_MARK, True)


def _level(name: str) -> int:
    if name.lower() not in LEVELS:
        raise ValueError(f"log level {name!r} is not one of {', '.join(LEVELS)}")
    return int(getattr(logging, name.upper()))


def recent_log_lines(limit: int = 2000, files: Iterable[Path] | None = None) -> list[str]:
    """The last `limit` lines across the current log file and its rotated backups, oldest first."""
    if files is None:
        base = log_file()
        files = [base.with_name(f"{base.name}.{i}") for i in range(DEFAULT_BACKUPS, 0, -1)] + [base]
    lines: list[str] = []
    for path in files:
        try:
            lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            continue
    return lines[-limit:]


def set_file_level(level: str) -> None:
    """Change the level of our log file (the config's `logging.level` when no `--log-level` was given)."""
    wanted = _level(level)
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False) and isinstance(handler, logging.FileHandler):
            handler.setLevel(wanted)
    if root.handlers:
        root.setLevel(min(h.level for h in root.handlers))
