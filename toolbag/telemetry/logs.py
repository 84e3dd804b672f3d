"""Structured JSON logs for every toolbag process, with secrets scrubbed before anything is written.

One JSON object per line on stderr: ``ts``, ``level``, ``logger``, ``role``, ``pid``, ``msg`` and the
record's own fields (``job_id``, ``attempt``, ``provider``, ``model``, ``outcome``, ...), given either as
``log.info("attempt", extra={...})`` or as a message that is itself a JSON object (``json.dumps({...})``,
whose keys are lifted to the top level). Every API key value the config names, and every other secret-looking
environment variable, is replaced by ``***`` in messages, fields and tracebacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import urlparse

REDACTED = "***"
MIN_SECRET_CHARS = 8  # shorter values are not scrubbed: they would mangle ordinary text
SECRET_ENV_RE = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$", re.IGNORECASE)
# Third-party loggers kept at WARNING unless the level is DEBUG: Celery, the vendor SDKs and their HTTP clients
# (the SDKs ship httpx2/httpcore2, which log every request at INFO; google.genai and google.auth under "google").
NOISY_LOGGERS = ("celery", "kombu", "amqp", "httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "openai",
                 "google", "google_genai", "urllib3")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def secret_values(config: Any = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The values to scrub: each provider's API key (``providers.*.api_key_env`` or the vendor default),
    any ``*_API_KEY`` / ``*_TOKEN`` / ``*_SECRET`` / ``*PASSWORD`` variable, and the Redis URL's password."""
    env = os.environ if environ is None else environ
    names = {name for name in env if SECRET_ENV_RE.search(name)}
    if config is not None:
        names |= {provider.default_key_env() for provider in config.providers.values()}
    values = {env.get(name, "").strip() for name in names}
    for name in ("TOOLBAG_REDIS_URL", "REDIS_URL"):
        password = urlparse(env.get(name, "")).password
        if password:
            values.add(password)
    # Longest first, so a key that contains another key is scrubbed whole.
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


class Redactor:
    """Replaces each secret (and its JSON-escaped form) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                forms.add(secret)
                forms.add(json.dumps(secret)[1:-1])
        self.secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with secrets scrubbed from every string in it (dicts and lists walked)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class RedactFilter(logging.Filter):
    """A handler filter: scrubs the message, its arguments, ``extra`` fields and the traceback of a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        if not redact.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRS:
                setattr(record, name, redact.value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record. A message that is a JSON object is merged into the top level."""

    def __init__(self, role: str = "", redactor: Redactor | None = None) -> None:
        super().__init__()
        self.role = role
        self.redactor = redactor or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self.role:
            out["role"] = self.role
        out["pid"] = record.process
        fields: dict[str, Any] = {}
        if message.startswith("{") and message.endswith("}"):
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                fields = parsed
                message = str(parsed.get("event", ""))
        out["msg"] = message
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                fields.setdefault(name, value)
        for name, value in fields.items():
            out.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        # Last line of defence: whatever reached the formatter, no secret leaves it.
        return self.redactor(json.dumps(out, default=str, ensure_ascii=False))


def configure(
    role: str,
    level: str | int = "INFO",
    *,
    config: Any = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every log record of this process to ``stream`` (stderr) as JSON lines, secrets scrubbed.

    ``level`` applies to toolbag's loggers; third-party libraries (Celery, kombu, the SDKs, httpx) log at
    WARNING unless ``level`` is DEBUG. Stops Celery from installing its own handlers. Returns the handler.
    """
    redactor = Redactor(secret_values(config, environ))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(role, redactor))
    handler.addFilter(RedactFilter(redactor))
    handler.set_name("toolbag-json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "toolbag-json"]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    root.setLevel(min(numeric, logging.WARNING))
    logging.getLogger("toolbag").setLevel(numeric)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
    return handler
