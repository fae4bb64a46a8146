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


def _secret(password: str) -> str:
    return json.dumps({"username": "svc-dropgate", "password": password})


def test_a_rotated_scram_password_is_read_again_after_its_max_age_or_when_refused() -> None:
    """Before: the secret was read once per execution environment, so a rotated password was only
    picked up when Lambda recycled it."""
    from dropgate.broker_auth import BrokerCredentials

    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="dropgate/kafka", SecretString=_secret("old"))["ARN"]
        reads: list[str] = []

        def counting_client() -> object:
            reads.append("client")
            return client

        cached = BrokerCredentials("scram-sha-512", secrets=counting_client, secret_arn=arn, max_age_s=300)
        expiring = BrokerCredentials("scram-sha-512", secrets=lambda: client, secret_arn=arn, max_age_s=0)
        assert cached.settings()["sasl.password"] == expiring.settings()["sasl.password"] == "old"
        client.put_secret_value(SecretId=arn, SecretString=_secret("new"))
        assert cached.settings()["sasl.password"] == "old"  # within its max age: no Secrets Manager call
        assert cached.settings(refresh=True)["sasl.password"] == "new"  # the broker refused "old"
        assert cached.settings()["sasl.password"] == "new"
        assert expiring.settings()["sasl.password"] == "new"  # past its max age
        assert reads == ["client"]  # one client, made at the first read


def test_the_publisher_gets_credentials_that_can_change_and_the_other_modes_stay_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dropgate.app import broker_credentials, build_publisher

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092")
    publisher = build_publisher(Settings())
    assert publisher._kafka_config() == {"bootstrap.servers": "b1:9092"}
    monkeypatch.setenv("DROPGATE_BROKER_AUTH", "msk-iam")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    credentials = broker_credentials(Settings())
    first, second = credentials.settings(), credentials.settings(refresh=True)
    assert first["oauth_cb"] is second["oauth_cb"]  # one callback: one producer, no rebuild per file
    monkeypatch.setenv("DROPGATE_BROKER_SECRET_MAX_AGE_S", "60")
    assert Settings().broker_secret_max_age_s == 60


@pytest.mark.parametrize("text", ["not json", '["a list"]', '{"username": "u"}', "null"])
def test_a_malformed_secret_is_named_without_echoing_it(text: str) -> None:
    from dropgate.broker_auth import BrokerCredentials

    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="dropgate/kafka", SecretString=text)["ARN"]
        credentials = BrokerCredentials("scram-sha-512", secrets=lambda: client, secret_arn=arn)
        with pytest.raises(BrokerAuthError, match="must hold JSON with 'username' and 'password'") as raised:
            credentials.settings()
    assert text not in str(raised.value) or text == "null"


def test_an_unreadable_secret_fails_the_file_not_the_process() -> None:
    """A publish that cannot read its credentials raises PublishError: the file is retried."""
    from dropgate.adapters.kafka_publisher import KafkaPublisher
    from dropgate.broker_auth import BrokerCredentials
    from dropgate.publishing import PublishError

    with mock_aws():
        client = boto3.client("secretsmanager")
        missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dropgate/gone-AbCdEf"
        credentials = BrokerCredentials("scram-sha-512", secrets=lambda: client, secret_arn=missing)
        publisher = KafkaPublisher({"bootstrap.servers": "b1:9092"}, "t", credentials=credentials.settings)
        with pytest.raises(PublishError, match="cannot read the credentials for b1:9092: cannot read the broker"):
            publisher.publish([])
