"""The function's configuration (`wasi:config/store`): the keys granted to
it (`[functions.config]` in its config). Never logged by the host.

    greeting = nimbus.config.get("greeting", "hello")
"""

from typing import Dict, Optional

from componentize_py_types import Err
from wit_world.imports import wasi_config_store as store

from .errors import ServiceError


def _error(e: Err) -> Exception:
    return ServiceError(f"configuration: {getattr(e.value, 'value', e.value)}")


def get(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value of `key`, or `default` when the function has no such key."""
    try:
        value = store.get(key)
    except Err as e:
        raise _error(e) from None
    return default if value is None else value


def all() -> Dict[str, str]:
    """Every key granted to the function, with its value."""
    try:
        return dict(store.get_all())
    except Err as e:
        raise _error(e) from None
