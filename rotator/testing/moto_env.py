"""The environment boto3 needs to talk to moto's server and nothing else.

Dummy credentials, a fixed region, no shared config or credentials file and no
instance-metadata lookups, so a test or benchmark never picks up a developer's
real AWS profile or waits on 169.254.169.254.
"""

from __future__ import annotations

import os

REGION = "us-east-1"

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
