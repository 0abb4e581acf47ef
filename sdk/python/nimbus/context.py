"""The invocation this instance runs (`nimbus:function/context`).

    inv = nimbus.context.current()
    inv.id, inv.tenant, inv.function_name, nimbus.context.remaining_ms()
"""

from wit_world.imports import context as _wasi

Invocation = _wasi.Invocation

_current = None


def current() -> "_wasi.Invocation":
    """This invocation: id (as in its usage record), tenant, function_name,
    function_version, memory_limit_bytes, timeout_ms."""
    global _current
    # Fixed for the instance's one invocation: ask the host once.
    if _current is None:
        _current = _wasi.current()
    return _current


def remaining_ms() -> int:
    """Milliseconds left before the invocation's deadline."""
    return _wasi.remaining_ms()
