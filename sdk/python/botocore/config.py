"""`botocore.config.Config`: accepted so client code that passes one runs
unchanged. Nimbus's S3 client makes no network calls, so none of its
settings (retries, timeouts, signature version, ...) changes anything."""


class Config:
    def __init__(self, *args, **kwargs):
        self._user_provided_options = dict(kwargs)
        for k, v in kwargs.items():
            setattr(self, k, v)

    def merge(self, other_config):
        merged = dict(self._user_provided_options)
        merged.update(other_config._user_provided_options)
        return Config(**merged)
