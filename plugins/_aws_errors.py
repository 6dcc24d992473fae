"""What Secrets Manager's errors mean: one secret-free line each, and whether to retry.

What AWS said is shown only through `vendor_text` (one line, scrubbed, short).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotator_plugins._sdk import NotFound, vendor_text

from rotator.plugin import PluginError

if TYPE_CHECKING:
    import botocore.exceptions

__all__ = ["deleted", "not_found", "token_reused", "translate"]

Fail = Callable[..., PluginError]

_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "UnauthorizedException",
}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "IncompleteSignature",
    "MissingAuthenticationToken",
}
_RETRYABLE = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
}


def not_found(fail: Fail, secret_id: str, region: str) -> PluginError:
    """The secret does not exist (`NotFound`: a write may create it)."""
    hint = "create it" if secret_id.startswith("arn:") else "create it, or set create = true"
    return fail(f"secret {secret_id} not found in {region} ({hint})", kind=NotFound)


def deleted(fail: Fail, secret_id: str, when: Any = None) -> PluginError:
    on = f" on {when:%Y-%m-%d}" if hasattr(when, "strftime") else ""
    return fail(
        f"{secret_id} is scheduled for deletion{on}; restore it first "
        f"(aws secretsmanager restore-secret --secret-id {secret_id})"
    )


def token_reused(fail: Fail, secret_id: str) -> PluginError:
    return fail(
        f"PutSecretValue on {secret_id}: this rotation's request token is already used by a "
        "different value (was the same rotation run with another key?)"
    )


def _aws_said(exc: botocore.exceptions.ClientError) -> str:
    return vendor_text(str(exc.response.get("Error", {}).get("Message") or ""), 300)


def _refused(exc: botocore.exceptions.ClientError, op: str, fail: Fail, sid: str, region: str) -> PluginError:
    """What AWS answered an API call with, as one line (and whether to retry)."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code") or "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    said = _aws_said(exc).lower()
    if code == "ResourceNotFoundException":
        return not_found(fail, sid, region)
    if code in _BAD_CREDENTIALS:
        return fail(f"AWS refused the credentials ({code}) on {op}")
    if code in _DENIED or status == 403:
        return fail(f"access denied: {op} on {sid} (check the IAM policy for secretsmanager:{op})")
    if code == "InvalidRequestException" and ("deletion" in said or "deleted" in said):
        return deleted(fail, sid)
    if code == "ResourceExistsException" and op == "PutSecretValue":
        return token_reused(fail, sid)
    if code.startswith("KMS") or code == "DecryptionFailure" or code == "EncryptionFailure":
        return fail(f"cannot use the KMS key of {sid} ({code}); check the key policy")
    if code in _RETRYABLE or (isinstance(status, int) and status >= 500):
        return fail(f"{op} on {sid} failed: {code or 'error'} (HTTP {status})", retryable=True)
    return fail(f"{op} on {sid} refused: {code or 'error'} (HTTP {status})")


def translate(
    exc: BaseException, op: str, fail: Fail, *, secret_id: str, region: str, profile: str | None, endpoint: str
) -> PluginError:
    """One secret-free line for a boto3/botocore exception raised while calling `op`."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        return _refused(exc, op, fail, secret_id, region)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return fail("no AWS credentials found (environment, profile, SSO or instance role)")
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return fail(f"AWS profile {profile} not found")
    if isinstance(exc, (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError)):
        return fail(f"timed out calling {op} at {endpoint}", retryable=True)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return fail(f"cannot reach Secrets Manager at {endpoint}", retryable=True)
    if isinstance(exc, botocore.exceptions.SSLError):
        return fail(f"TLS error talking to {endpoint}")
    if isinstance(exc, botocore.exceptions.ConnectionError):
        return fail(f"connection to {endpoint} failed ({type(exc).__name__})", retryable=True)
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return fail(f"{op}: invalid parameters for {secret_id}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return fail(f"{op} failed: {type(exc).__name__}", retryable=True)
    return fail(f"{op} failed: {type(exc).__name__}", retryable=True)
