"""Structured logs (`wasi:logging`): kept with the invocation's logs
(`GET /admin/v1/tenants/{t}/functions/{f}/logs`) with their level and
context, and sent to the host's tracing. `print` and `sys.stderr` land in
the same logs as plain stdout/stderr lines.

    nimbus.log.info("resized", context="thumbnail")
"""

from wit_world.imports import logging as _wasi

Level = _wasi.Level


def log(level: "_wasi.Level", message: object, context: str = "") -> None:
    _wasi.log(level, context, str(message))


def trace(message: object, context: str = "") -> None:
    log(Level.TRACE, message, context)


def debug(message: object, context: str = "") -> None:
    log(Level.DEBUG, message, context)


def info(message: object, context: str = "") -> None:
    log(Level.INFO, message, context)


def warn(message: object, context: str = "") -> None:
    log(Level.WARN, message, context)


warning = warn


def error(message: object, context: str = "") -> None:
    log(Level.ERROR, message, context)


def critical(message: object, context: str = "") -> None:
    log(Level.CRITICAL, message, context)
