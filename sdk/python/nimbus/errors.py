"""Exceptions the Nimbus SDK raises, one per kind of failure a service
reports, each naming the store, container or topic it was about.

They derive from the built-in exception a Python programmer would catch for
the same situation (`PermissionError`, `LookupError`, `ValueError`,
`TimeoutError`), so generic handlers keep working.
"""


class NimbusError(Exception):
    """Base of every error the SDK raises for a service's answer."""


class AccessDenied(NimbusError, PermissionError):
    """The function is not granted the store, container or topic it named
    (the host counts the attempt in the invocation's `denied_calls`)."""


class NotFound(NimbusError, LookupError):
    """What was named does not exist."""

    def __str__(self) -> str:
        # LookupError's str() of one argument is its repr (quoted): show
        # the message as written.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class NoSuchStore(NotFound):
    """A key-value store that does not exist."""


class NoSuchContainer(NotFound):
    """A blob container that does not exist."""


class NoSuchObject(NotFound):
    """An object that is not in its container."""


class InvalidInput(NimbusError, ValueError):
    """Raised by a handler: the event is malformed or not something this
    function handles. The invocation ends with the final `invalid-input`
    error (never retried); over HTTP the caller gets a 400."""


class Timeout(NimbusError, TimeoutError):
    """A service did not answer in time."""


class ServiceError(NimbusError):
    """Any other failure a service reported (a limit, a storage error)."""
