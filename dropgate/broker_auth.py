"""How dropgate authenticates to the brokers: none, SASL/SCRAM with credentials from Secrets
Manager, or MSK IAM (SASL/OAUTHBEARER with a SigV4-signed token).

Chosen by ``DROPGATE_BROKER_AUTH``; anything finer (TLS files, another mechanism) passes through as
``DROPGATE_KAFKA_<PROPERTY>``. Credentials are read once per process, at cold start, and never
logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

BrokerAuth = Literal["none", "scram-sha-512", "msk-iam"]


class BrokerAuthError(RuntimeError):
    """The configured authentication cannot be set up; the message says what is missing."""


def scram_config(secret_arn: str | None, secrets: Callable[[], Any]) -> dict[str, Any]:
    """SASL/SCRAM credentials from the Secrets Manager secret ``secret_arn`` (``secrets()``: a client)."""
    if not secret_arn:
        raise BrokerAuthError(
            "DROPGATE_BROKER_AUTH=scram-sha-512 needs DROPGATE_BROKER_SECRET_ARN (a secret "
            'holding {"username": …, "password": …})'
        )
    secret = json.loads(secrets().get_secret_value(SecretId=secret_arn)["SecretString"])
    try:
        username, password = secret["username"], secret["password"]
    except KeyError:
        raise BrokerAuthError(f"secret {secret_arn} must hold JSON with 'username' and 'password'") from None
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": username,
        "sasl.password": password,
    }


def msk_iam_token_callback(region: str) -> Callable[[str], tuple[str, float]]:
    """librdkafka's ``oauth_cb``: a fresh SigV4 token from the function's own IAM role."""
    try:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    except ImportError:
        raise BrokerAuthError(
            "DROPGATE_BROKER_AUTH=msk-iam needs the MSK IAM signer: pip install 'dropgate[msk]'"
        ) from None

    def token(_config: str) -> tuple[str, float]:
        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return value, expiry_ms / 1000

    return token


def msk_iam_config(region: str | None) -> dict[str, Any]:
    if not region:
        raise BrokerAuthError("DROPGATE_BROKER_AUTH=msk-iam needs AWS_REGION")
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": msk_iam_token_callback(region),
    }


def auth_config(
    mode: BrokerAuth, *, secrets: Callable[[], Any], secret_arn: str | None = None, region: str | None = None
) -> dict[str, Any]:
    """librdkafka's settings for ``mode``; ``secrets`` makes a Secrets Manager client, if one is needed."""
    if mode == "none":
        return {}
    if mode == "scram-sha-512":
        return scram_config(secret_arn, secrets)
    return msk_iam_config(region)
