"""A partner drops files over FTP: complete uploads become events; cut-off ones never publish."""

from __future__ import annotations

import ftplib
import io
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.ftp_drop import FtpDrop, start_ftp_drop
from devstack.sqs_runner import drain_queue
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.partners import PartnerDirectory
from dropgate.storage import ObjectRef
from handlers.ingest import handler
from tests.conftest import TopicProbe, fixture_bytes
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
BUCKET = "dropgate-ftp-drops"
PASSWORD = "test-password"
PASSWORDS = {"acme": PASSWORD, "globex": "globex-password"}


@pytest.fixture
def stack(local_stack: Stack) -> Iterator[dict[str, Any]]:
    clients = local_stack.clients
    partners = PartnerDirectory.load(local_stack.settings.partners)
    passwords = {partner.id: PASSWORDS.get(partner.id, f"{partner.id}-password") for partner in partners}
    drop = start_ftp_drop(partners, clients["s3"], BUCKET, passwords=passwords, port=0)
    yield {"clients": clients, "queue_url": local_stack.queue_url, "drop": drop}
    drop.stop()


def session(drop: FtpDrop) -> ftplib.FTP:
    client = ftplib.FTP()  # noqa: S321 - the local drop is plain FTP on loopback, as partners' tools use
    client.connect(drop.host, drop.port, timeout=60)
    client.login("acme", PASSWORD)
    return client


def barrier(client: ftplib.FTP) -> None:
    """The server runs one event loop: once NOOP is answered, the previous upload's hook is done."""
    client.voidcmd("NOOP")


def test_ftp_uploads_become_events_and_cut_uploads_never_publish(
    stack: dict[str, Any], topic_probe: TopicProbe
) -> None:
    drop: FtpDrop = stack["drop"]
    whole = fixture_bytes("good/acme-2026-11-20.xml")
    client = session(drop)
    client.storbinary("STOR inventory.xml", io.BytesIO(whole))
    barrier(client)

    # The line is cut mid-transfer (connection reset). It is a race: if the server read everything
    # before the reset, FTP cannot tell it from the end of the file (it lands, truncated); if it sees
    # the reset, it aborts the transfer (it never lands). Either way it must never publish.
    # A third outcome happens too: the server never answers the cut STOR (the reset arrived before
    # it used the data connection). Then the control connection is abandoned for a fresh session.
    data = client.transfercmd("STOR cut.xml")
    data.sendall(whole[: len(whole) // 2])
    data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    data.close()
    client.sock.settimeout(10)
    try:
        client.voidresp()
    except ftplib.error_temp:  # 426 when the server saw the reset
        pass
    except TimeoutError:
        client.close()
        client = session(drop)
    client.sock.settimeout(60)
    barrier(client)
    # A gzip upload that stops early: its stream lacks the end marker.
    gz = fixture_bytes("good/acme-2026-11-21.xml.gz")
    client.storbinary("STOR stopped-early.xml.gz", io.BytesIO(gz[: len(gz) // 2]))
    barrier(client)
    client.quit()

    cut_landed = "acme/cut.xml" in drop.landed
    assert drop.landed == ["acme/inventory.xml", *(["acme/cut.xml"] if cut_landed else []), "acme/stopped-early.xml.gz"]
    assert drop.discarded in ([], ["acme/cut.xml"]) and not (cut_landed and drop.discarded)

    stats = drain_queue(stack["clients"]["sqs"], stack["queue_url"], handler, wait_seconds=0)
    assert stats.failed == 0
    sources = {m.headers["source-object"].decode().split("?")[0] for m in topic_probe.messages()}
    assert sources == {f"s3://{BUCKET}/acme/inventory.xml"}
    assert len(topic_probe.messages()) == 5

    ledger = DynamoLedger(stack["clients"]["dynamodb"], f"{BUCKET}-ledger")
    if cut_landed:
        (cut,) = ledger.history(ObjectRef(BUCKET, "acme/cut.xml"))
        assert cut.status == "quarantined" and "[xml_syntax]" in (cut.reason or "")
    (stopped,) = ledger.history(ObjectRef(BUCKET, "acme/stopped-early.xml.gz"))
    assert stopped.status == "quarantined" and "the upload was cut off" in (stopped.reason or "")


def test_partners_only_see_their_own_folder(stack: dict[str, Any]) -> None:
    client = session(stack["drop"])
    assert client.pwd() == "/"
    with pytest.raises(ftplib.error_perm):
        client.cwd("/../globex")
    with pytest.raises(ftplib.error_perm):
        client.login("acme", "wrong password")
    client.close()


def test_each_partner_has_its_own_password(stack: dict[str, Any]) -> None:
    """With one shared password, acme's credentials logged in as globex and dropped files as globex."""
    drop: FtpDrop = stack["drop"]
    client = ftplib.FTP()  # noqa: S321 - the local drop is plain FTP on loopback
    client.connect(drop.host, drop.port, timeout=60)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login("globex", PASSWORD)  # acme's password
    client.close()
    client = ftplib.FTP()  # noqa: S321
    client.connect(drop.host, drop.port, timeout=60)
    client.login("globex", PASSWORDS["globex"])
    client.quit()
