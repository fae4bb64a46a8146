"""Hostile partner files: each is quarantined with the right kind, fast, in bounded memory, and
nothing from it (or from what it points at) appears in any event, log line or diagnostic.

Each file is built here, then run through the real CLI (`dropgate inspect`) in its own process so
its wall time and peak RSS are its own. A listening socket proves that no DTD or entity is fetched.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SECRET = "TOP-SECRET-7f3a9c"
MAX_SECONDS = 10.0
MAX_RSS_MB = 256
GOOD_PRODUCT = '<product id="A"><quantity>1</quantity></product>'

# Runs the CLI and reports its own peak RSS. VmHWM belongs to the address space created at exec;
# ru_maxrss would also count what the (large) pytest parent held when it forked.
_WRAPPER = """
import json, sys
from dropgate.cli import main
code = 0
try:
    sys.argv = ["dropgate", "inspect", sys.argv[1], "--partner", sys.argv[2]]
    main()
except SystemExit as exit_:
    code = exit_.code or 0
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
sys.stderr.write("\\n@@" + json.dumps({"code": code, "rss_kb": hwm}))
"""


class Listener:
    """A TCP port that records every connection attempt."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    watcher = Listener()
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(SECRET)
    return path


def gzip_bomb(path: Path) -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as handle:
        handle.write(deflate.compress(b"<inventory>" + GOOD_PRODUCT.encode()))
        block = b"<x/>" * 250_000
        for _ in range(1_000):  # 1 GB of markup in a few hundred kB
            handle.write(deflate.compress(block))
        handle.write(deflate.flush())


def cases(listener: Listener, secret: Path) -> dict[str, tuple[str, Callable[[Path], None]]]:
    url = f"http://127.0.0.1:{listener.port}"
    lol = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))

    def text(body: str, encoding: str = "utf-8") -> Callable[[Path], None]:
        return lambda path: path.write_bytes(body.encode(encoding))

    def raw(data: bytes) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(data)

    return {
        "billion_laughs": (
            "security_limit",
            text(f'<!DOCTYPE inventory [{lol}]><inventory><product id="&lol9;"/></inventory>'),
        ),
        "quadratic_blowup": (
            "security_limit",
            text(
                f'<!DOCTYPE inventory [<!ENTITY a "{"a" * 30_000}">]><inventory><product id="A"><name>'
                + "&a;" * 20_000
                + "</name><quantity>1</quantity></product></inventory>"
            ),
        ),
        "external_entity_local_file": (
            "security_limit",
            text(
                f'<!DOCTYPE inventory [<!ENTITY s SYSTEM "file://{secret}">]><inventory><product id="A"><name>&s;</name>'
                "<quantity>1</quantity></product></inventory>"
            ),
        ),
        "external_entity_url": (
            "security_limit",
            text(
                f'<!DOCTYPE inventory [<!ENTITY s SYSTEM "{url}/secret">]><inventory><product id="A"><name>&s;</name>'
                "<quantity>1</quantity></product></inventory>"
            ),
        ),
        "external_dtd": (
            "security_limit",
            text(
                f'<!DOCTYPE inventory SYSTEM "{url}/evil.dtd"><inventory><product id="A"><name>&fromdtd;</name>'
                "<quantity>1</quantity></product></inventory>"
            ),
        ),
        "parameter_entity_dtd": (
            "security_limit",
            text(
                f'<!DOCTYPE inventory [<!ENTITY % remote SYSTEM "{url}/p.dtd"> %remote;]><inventory>{GOOD_PRODUCT}</inventory>'
            ),
        ),
        "gzip_bomb": ("security_limit", gzip_bomb),
        "text_node_50mb": (
            "security_limit",
            raw(
                b'<inventory><product id="A"><name>'
                + b"A" * 50_000_000
                + b"</name><quantity>1</quantity></product></inventory>"
            ),
        ),
        "nested_100k": (
            "security_limit",
            raw(
                b'<inventory><product id="A"><quantity>1</quantity>'
                + b"<x>" * 100_000
                + b"</x>" * 100_000
                + b"</product></inventory>"
            ),
        ),
        "empty": ("empty", raw(b"")),
        "not_xml": ("xml_syntax", raw(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))),
        "wrong_declared_encoding": (
            "encoding",
            text(
                '<?xml version="1.0" encoding="UTF-8"?><inventory><product id="A"><name>Caf\u00e9</name>'
                "<quantity>1</quantity></product></inventory>",
                "latin-1",
            ),
        ),
        "truncated": ("xml_syntax", text(f'<inventory>{GOOD_PRODUCT}<product id="B"><quan')),
        "text_after_root": ("xml_syntax", text(f"<inventory>{GOOD_PRODUCT}</inventory>trailing text")),
        "two_roots": ("xml_syntax", text(f"<inventory>{GOOD_PRODUCT}</inventory><inventory/>")),
    }


def run_inspect(path: Path, partner: str = "acme") -> tuple[dict[str, int], str, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(path), partner],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    seconds = time.monotonic() - started
    err, _, stats = done.stderr.rpartition("\n@@")
    return json.loads(stats), done.stdout, err, seconds


CASE_NAMES = [
    "billion_laughs",
    "quadratic_blowup",
    "external_entity_local_file",
    "external_entity_url",
    "external_dtd",
    "parameter_entity_dtd",
    "gzip_bomb",
    "text_node_50mb",
    "nested_100k",
    "empty",
    "not_xml",
    "wrong_declared_encoding",
    "truncated",
    "text_after_root",
    "two_roots",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_file_is_quarantined_fast_small_and_silent(
    name: str, listener: Listener, secret_file: Path, tmp_path: Path
) -> None:
    kind, build = cases(listener, secret_file)[name]
    path = tmp_path / (f"{name}.xml.gz" if name == "gzip_bomb" else f"{name}.xml")
    build(path)
    before = listener.connections
    stats, stdout, stderr, seconds = run_inspect(path)
    assert stats["code"] == 1, stderr  # would be quarantined
    assert stdout == ""  # no event
    first = stderr.splitlines()[0]
    assert first.startswith(f"[{kind}]"), stderr
    assert seconds < MAX_SECONDS
    assert stats["rss_kb"] / 1024 < MAX_RSS_MB
    assert SECRET not in stdout + stderr
    assert "lollollol" not in stderr and "a" * 200 not in stderr  # no expansion echoed back
    assert listener.connections == before  # nothing fetched


def test_utf16_with_a_bom_is_read_correctly_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "utf16.xml"
    path.write_bytes(
        '<?xml version="1.0" encoding="UTF-16"?><inventory><product id="A"><name>Caf\u00e9</name>'
        "<quantity>1</quantity></product></inventory>".encode("utf-16")
    )
    stats, stdout, _stderr, _ = run_inspect(path)
    assert stats["code"] == 0
    assert json.loads(stdout)["value"]["name"] == "Café"


def test_limits_are_configurable_and_named_where_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "".join(f'<product id="P{i}"><quantity>1</quantity></product>' for i in range(5))
    path = tmp_path / "five.xml"
    path.write_text(f"<inventory>{body}</inventory>")
    monkeypatch.setenv("DROPGATE_MAX_RECORDS", "3")
    _stats, _out, err, _ = run_inspect(path)
    assert "[security_limit]" in err and "more than 3 products" in err and "record 4" in err
    monkeypatch.delenv("DROPGATE_MAX_RECORDS")
    wide = tmp_path / "wide.xml"
    wide.write_text(
        '<inventory><product id="A" '
        + " ".join(f'a{i}="1"' for i in range(100))
        + "><quantity>1</quantity></product></inventory>"
    )
    _stats, _out, err, _ = run_inspect(wide)
    assert "<product> has 101 attributes, over the limit of 64" in err
    deep = tmp_path / "deep.xml"
    deep.write_text(
        '<inventory><product id="A"><quantity>1</quantity>' + "<x>" * 20 + "</x>" * 20 + "</product></inventory>"
    )
    _stats, _out, err, _ = run_inspect(deep)
    assert "over the limit of 12" in err and "[security_limit] line 1, record 1 (A)" in err
    long_text = tmp_path / "long.xml"
    long_text.write_text(
        '<inventory><product id="A"><name>' + "n" * 70_000 + "</name><quantity>1</quantity></product></inventory>"
    )
    _stats, _out, err, _ = run_inspect(long_text)
    assert "<name> holds 70,000 characters, over the limit of 65,536 per field" in err
    assert "nnnnnnnnnn" not in err


def test_partner_limits_override_the_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text("partners:\n  acme: {prefix: acme/, format: generic, limits: {max_records: 2}}\n")
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    path = tmp_path / "three.xml"
    path.write_text("<inventory>" + GOOD_PRODUCT * 3 + "</inventory>")
    _stats, _out, err, _ = run_inspect(path)
    assert "more than 2 products" in err


def test_gzip_bomb_names_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid, identical records compress a thousandfold: each completes, so only the ratio stops it."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(
        gzip.compress(b"<inventory>" + GOOD_PRODUCT.encode() * 2_000_000 + b"</inventory>", compresslevel=9)
    )
    _stats, _out, err, seconds = run_inspect(path)
    assert "[security_limit]" in err and "expands more than 200 times" in err
    assert seconds < MAX_SECONDS


#: Each format's smallest valid document; {doctype} before the root, {text} in a text field of the one
#: record, {nest} inside the record.
FORMAT_SHAPES = {
    "northwind": (
        "rss",
        '{doctype}<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>A</g:id>'
        "<title>{text}</title><g:availability>in_stock</g:availability>{nest}</item></channel></rss>",
    ),
    "contoso": (
        "rss",
        '{doctype}<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel><item>'
        "<g:store_code>{text}</g:store_code><g:id>A</g:id><g:quantity>1</g:quantity>{nest}</item></channel></rss>",
    ),
    "tailspin": (
        "AmazonEnvelope",
        "{doctype}<AmazonEnvelope><Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M</MerchantIdentifier>"
        "</Header><MessageType>Inventory</MessageType><Message><MessageID>1</MessageID><OperationType>Update"
        "</OperationType><Inventory><SKU>{text}</SKU><Quantity>1</Quantity>{nest}</Inventory></Message></AmazonEnvelope>",
    ),
    "fabrikam": (
        "cXML",
        '{doctype}<cXML payloadID="p" timestamp="2026-11-20T08:00:00Z"><Header/><Message><ProductActivityMessage>'
        "<ProductActivityDetails><ItemID><SupplierPartID>A</SupplierPartID></ItemID><Description>{text}</Description>"
        '<Inventory><UnrestrictedUseQuantity quantity="1"/></Inventory>{nest}</ProductActivityDetails>'
        "</ProductActivityMessage></Message></cXML>",
    ),
    "initech": (
        "s:StockReport",
        '{doctype}<s:StockReport xmlns:s="urn:initech:stock:1"><s:Items><s:Item><s:Code>A</s:Code>'
        "<s:Description>{text}</s:Description><s:OnHand>1</s:OnHand>{nest}</s:Item></s:Items></s:StockReport>",
    ),
}
FORMAT_ATTACKS = ["billion_laughs", "external_entity_url", "external_dtd_entity", "text_node_5mb", "nested_100k"]


def format_attack(partner: str, attack: str, listener: Listener) -> str:
    root, shape = FORMAT_SHAPES[partner]
    url = f"http://127.0.0.1:{listener.port}"
    lol = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    doctype, text, nest = "", "ok", ""
    if attack == "billion_laughs":
        doctype, text = f"<!DOCTYPE {root} [{lol}]>", "&lol9;"
    elif attack == "external_entity_url":
        doctype, text = f'<!DOCTYPE {root} [<!ENTITY s SYSTEM "{url}/secret">]>', "&s;"
    elif attack == "external_dtd_entity":
        doctype, text = f'<!DOCTYPE {root} SYSTEM "{url}/evil.dtd">', "&fromdtd;"
    elif attack == "text_node_5mb":
        text = "A" * 5_000_000
    else:
        nest = "<x>" * 100_000 + "</x>" * 100_000
    return shape.format(doctype=doctype, text=text, nest=nest)


@pytest.mark.parametrize("attack", FORMAT_ATTACKS)
@pytest.mark.parametrize("partner", sorted(FORMAT_SHAPES))
def test_every_format_refuses_the_same_attacks(partner: str, attack: str, listener: Listener, tmp_path: Path) -> None:
    path = tmp_path / f"{partner}-{attack}.xml"
    path.write_text(format_attack(partner, attack, listener), encoding="utf-8")
    clean = tmp_path / f"{partner}-clean.xml"
    clean.write_text(FORMAT_SHAPES[partner][1].format(doctype="", text="ok", nest=""), encoding="utf-8")
    before = listener.connections
    ok_stats, ok_out, ok_err, _ = run_inspect(clean, partner)
    assert ok_stats["code"] == 0 and ok_out.count("\n") == 1, ok_err  # the shape itself is valid
    stats, stdout, stderr, seconds = run_inspect(path, partner)
    assert stats["code"] == 1, stderr
    assert stdout == ""
    assert stderr.splitlines()[0].startswith("[security_limit]"), stderr
    assert seconds < MAX_SECONDS
    assert stats["rss_kb"] / 1024 < MAX_RSS_MB
    assert "lollollol" not in stderr and "A" * 200 not in stderr
    assert listener.connections == before
