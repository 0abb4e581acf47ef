"""The part of botocore that code using Nimbus's `boto3` S3 client touches:
`botocore.exceptions` (`ClientError` with botocore's response shape),
`botocore.response.StreamingBody` and `botocore.config.Config`. Not the
AWS botocore: there is no HTTP, signing or credentials here; see
`sdk/python/README.md`.
"""

__version__ = "1.35.0+nimbus"
