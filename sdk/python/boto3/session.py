"""`boto3.session.Session`: credentials, profiles and regions are accepted
and ignored (the client reaches only the function's own grants)."""

from nimbus import aws as _aws

from ._s3 import S3

SUPPORTED = (
    "S3 only, bucket = one of the function's granted blob containers: get_object, "
    "put_object, head_object, delete_object, delete_objects, list_objects_v2 "
    "(and its paginator), copy_object, upload_fileobj, download_fileobj"
)


class Session:
    def __init__(
        self,
        aws_access_key_id=None,
        aws_secret_access_key=None,
        aws_session_token=None,
        region_name=None,
        botocore_session=None,
        profile_name=None,
        aws_account_id=None,
    ):
        self.region_name = region_name or _aws.REGION
        self.profile_name = profile_name or "default"

    def get_available_services(self):
        return ["s3"]

    def client(self, service_name, region_name=None, api_version=None, use_ssl=True,
               verify=None, endpoint_url=None, aws_access_key_id=None,
               aws_secret_access_key=None, aws_session_token=None, config=None,
               aws_account_id=None):
        if service_name != "s3":
            raise NotImplementedError(
                f"boto3.client({service_name!r}): Nimbus provides no {service_name} service; "
                f"supported: {SUPPORTED}. Key-value data: nimbus.kv; queues: nimbus.messaging"
            )
        return S3(region_name or self.region_name)

    def resource(self, service_name, *args, **kwargs):
        raise NotImplementedError(
            f"boto3.resource({service_name!r}): Nimbus provides no resource API; "
            f"use boto3.client('s3') ({SUPPORTED})"
        )
