"""`import boto3` for Nimbus functions: `boto3.client('s3')` is an S3 client
backed by the function's granted blob containers (a bucket is a
container). It makes no network call and needs no credentials; creating
it calls nothing, so `s3 = boto3.client('s3')` at module level (which runs
when the component is built) is fine. Other services raise
`NotImplementedError`. What is supported: `sdk/python/README.md`.
"""

from .session import Session

__version__ = "1.35.0+nimbus"

_default = None


def _session() -> Session:
    global _default
    if _default is None:
        _default = Session()
    return _default


def setup_default_session(**kwargs) -> None:
    global _default
    _default = Session(**kwargs)


def client(service_name, *args, **kwargs):
    """A client of `service_name`: only "s3"."""
    return _session().client(service_name, *args, **kwargs)


def resource(service_name, *args, **kwargs):
    return _session().resource(service_name, *args, **kwargs)


__all__ = ["Session", "client", "resource", "setup_default_session"]
