"""How dropgate authenticates to the brokers: none, SASL/SCRAM with credentials from Secrets
Manager, or MSK IAM (SASL/OAUTHBEARER with a SigV4-signed token).

Chosen by ``DROPGATE_BROKER_AUTH``; anything finer (TLS files, another mechanism) passes through as
``DROPGATE_KAFKA_<PROPERTY>``. Credentials are never logged. A SCRAM password can be rotated while
the functions run: :class:`BrokerCredentials` re-reads the secret once its copy is older than
``DROPGATE_BROKER_SECRET_MAX_AGE_S``, and at once after the broker refused a login.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

BrokerAuth = Literal["none", "scram-sha-512", "msk-iam"]

#: How long a read of the SCRAM secret is used before Secrets Manager is asked again.
SECRET_MAX_AGE_S = 300


class BrokerAuthError(RuntimeError):
    """The configured authentication cannot be set up; the message says what is missing."""


def _require_secret_arn(secret_arn: str | None) -> str:
    if not secret_arn:
        raise BrokerAuthError(
            "DROPGATE_BROKER_AUTH=scram-sha-512 needs DROPGATE_BROKER_SECRET_ARN (a secret "
            'holding {"username": …, "password": …})'
        )
    return secret_arn


def scram_settings(secret_text: str, secret_arn: str) -> dict[str, Any]:
    """librdkafka's SCRAM settings from the secret's JSON (never echoed: it holds the password)."""
    try:
        secret = json.loads(secret_text)
        username, password = secret["username"], secret["password"]
    except (ValueError, TypeError, KeyError):
        raise BrokerAuthError(f"secret {secret_arn} must hold JSON with 'username' and 'password'") from None
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": username,
        "sasl.password": password,
    }


def scram_config(secret_arn: str | None, secrets: Callable[[], Any]) -> dict[str, Any]:
    """SASL/SCRAM credentials from the Secrets Manager secret ``secret_arn`` (``secrets()``: a client)."""
    arn = _require_secret_arn(secret_arn)
    return scram_settings(secrets().get_secret_value(SecretId=arn)["SecretString"], arn)


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


class BrokerCredentials:
    """The authentication settings of a long-lived producer, current whenever they are asked for.

    For SCRAM, :meth:`settings` returns the secret as Powertools' ``SecretsProvider`` cached it, for
    at most ``max_age_s``; ``settings(refresh=True)``, asked after the broker refused a login, reads
    it again at once. The settings of the other modes never change (MSK IAM's callback signs a fresh
    token by itself), so they are built once and returned as they are.
    """

    def __init__(
        self,
        mode: BrokerAuth,
        *,
        secrets: Callable[[], Any],
        secret_arn: str | None = None,
        region: str | None = None,
        max_age_s: int = SECRET_MAX_AGE_S,
    ) -> None:
        self._secrets = secrets
        self._max_age_s = max_age_s
        self._provider: Any = None
        self._secret_arn: str | None = None
        self._fixed: dict[str, Any] | None = None
        if mode == "scram-sha-512":
            self._secret_arn = _require_secret_arn(secret_arn)
        else:
            self._fixed = auth_config(mode, secrets=secrets, region=region)

    def settings(self, *, refresh: bool = False) -> dict[str, Any]:
        if self._secret_arn is None:
            return dict(self._fixed or {})
        if self._provider is None:  # imported here: only SCRAM deployments pay for it
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._provider = SecretsProvider(boto3_client=self._secrets())
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            text = self._provider.get(self._secret_arn, max_age=self._max_age_s, force_fetch=refresh)
        except GetParameterError as error:
            raise BrokerAuthError(f"cannot read the broker credentials from {self._secret_arn}: {error}") from None
        return scram_settings(text, self._secret_arn)
