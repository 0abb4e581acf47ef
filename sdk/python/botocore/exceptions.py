"""botocore's exceptions, as code catching them expects them."""


class BotoCoreError(Exception):
    """The base of botocore's own (not service) errors."""

    fmt = "An unspecified error occurred"

    def __init__(self, **kwargs):
        super().__init__(self.fmt.format(**kwargs))
        self.kwargs = kwargs


class ParamValidationError(BotoCoreError):
    fmt = "Parameter validation failed:\n{report}"


class UnknownServiceError(BotoCoreError):
    fmt = "Unknown service: '{service_name}'. Valid service names are: {known_service_names}"


class NoCredentialsError(BotoCoreError):
    fmt = "Unable to locate credentials"


class EndpointConnectionError(BotoCoreError):
    fmt = 'Could not connect to the endpoint URL: "{endpoint_url}"'


class ClientError(Exception):
    """A service's error answer. `response` is botocore's dict:
    `{"Error": {"Code", "Message", ...}, "ResponseMetadata": {"HTTPStatusCode", ...}}`."""

    MSG_TEMPLATE = "An error occurred ({error_code}) when calling the {operation_name} operation{retry_info}: {error_message}"

    def __init__(self, error_response, operation_name):
        error = error_response.get("Error", {})
        message = self.MSG_TEMPLATE.format(
            error_code=error.get("Code", "Unknown"),
            error_message=error.get("Message", "Unknown"),
            operation_name=operation_name,
            retry_info="",
        )
        super().__init__(message)
        self.response = error_response
        self.operation_name = operation_name

    def __reduce__(self):
        return self.__class__, (self.response, self.operation_name)
