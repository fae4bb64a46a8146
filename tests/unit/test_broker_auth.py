"""Broker authentication: SCRAM from Secrets Manager, MSK IAM tokens, plain passthrough."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from dropgate.app import aws_client, kafka_config
from dropgate.broker_auth import BrokerAuthError, auth_config
from dropgate.config import Settings


def test_no_auth_by_default_and_passthrough_of_librdkafka_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("DROPGATE_KAFKA_SSL_CA_LOCATION", "/etc/ca.pem")
    assert kafka_config(Settings()) == {"bootstrap.servers": "b1:9092,b2:9092", "ssl.ca.location": "/etc/ca.pem"}


def test_scram_credentials_come_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="dropgate/kafka", SecretString=json.dumps({"username": "svc-dropgate", "password": "s3cr3t"})
        )["ARN"]
        monkeypatch.setenv("DROPGATE_BROKER_AUTH", "scram-sha-512")
        monkeypatch.setenv("DROPGATE_BROKER_SECRET_ARN", arn)
        config = kafka_config(Settings())
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("svc-dropgate", "s3cr3t")
    assert "s3cr3t" not in repr(Settings())  # the secret is not part of the settings' own text


def test_scram_without_a_secret_says_what_is_missing() -> None:
    with pytest.raises(BrokerAuthError, match="needs DROPGATE_BROKER_SECRET_ARN"):
        auth_config("scram-sha-512", secrets=lambda: aws_client("secretsmanager"))


def test_msk_iam_signs_a_token_with_the_roles_credentials() -> None:
    config = auth_config("msk-iam", secrets=lambda: aws_client("secretsmanager"), region="eu-west-1")
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    token, expires_at = config["oauth_cb"]("")
    import base64
    import time

    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert decoded.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert "X-Amz-Signature=" in decoded
    assert time.time() < expires_at < time.time() + 3600  # seconds, as librdkafka expects
