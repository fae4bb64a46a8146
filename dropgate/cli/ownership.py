"""``dropgate keys owner`` and ``dropgate keys transfer``: who owns a key, and handing it over.

A key belongs to the partner that first published it (:mod:`dropgate.key_ownership`); another
partner's record of it is an ``authorization`` problem. When a product really moved from one
partner to another, an operator transfers its key; the transfer is a ledger row, shown by
``keys owner``. Keys are shown escaped (:mod:`dropgate.terminal`): they come from partners.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dropgate.cli.output import EXIT_NOT_FOUND, print_json
from dropgate.cli.root import app, echo, fail
from dropgate.config import Settings
from dropgate.terminal import shown

keys_app = typer.Typer(help="Key ownership between partners: who owns a key, transfer it.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KeyArgument = Annotated[str, typer.Argument(help="The key as on the topic (e.g. a product id).")]


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _hash_hex(key: str) -> str:
    from dropgate.key_index import key_hash

    return f"{key_hash(_key_bytes(key)):016x}"


@keys_app.command("owner")
def owner(
    key: KeyArgument,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document (schemas/cli/keys-owner.json).")] = False,
) -> None:
    """The partner that owns KEY, and the key's transfers. Exit 3 if no partner owns it yet."""
    from dropgate.app import build_ledger, build_ownership
    from dropgate.key_ownership import owner_of, shard_of

    settings = Settings()
    found = owner_of(build_ownership(settings), settings.bucket, _key_bytes(key))
    transfers = build_ledger(settings).transfers(_hash_hex(key))
    document: dict[str, Any] = {
        "key": key,
        "keyHash": _hash_hex(key),
        "owner": found,
        "shard": shard_of(_key_bytes(key)).name,
        "transfers": [{"from": t.source, "to": t.target, "at": t.at, "by": t.by} for t in transfers],
    }
    if as_json:
        print_json(document)
    elif found is None:
        echo(f"no partner owns key '{shown(key)}' yet: the first partner to publish it will")
    else:
        echo(f"key '{shown(key)}' is owned by partner '{shown(found)}'")
        for t in transfers:
            echo(f"  transferred from '{shown(t.source)}' to '{shown(t.target)}' at {shown(t.at)} by {shown(t.by)}")
    if found is None:
        raise typer.Exit(EXIT_NOT_FOUND)


@keys_app.command("transfer")
def transfer(
    key: KeyArgument,
    source: Annotated[str, typer.Option("--from", help="The partner that owns the key now.")],
    target: Annotated[str, typer.Option("--to", help="The partner that may publish it from now on.")],
) -> None:
    """Give KEY from one partner to another (recorded in the ledger). The --from partner's state
    stays on the topic until the new owner publishes the key."""
    from dropgate.app import build_ledger, build_ownership, load_partners
    from dropgate.key_ownership import NotOwned
    from dropgate.key_ownership import transfer as give
    from dropgate.ledger import KeyTransfer
    from dropgate.partners import PartnerConfigError

    settings = Settings()
    try:
        load_partners(settings).get(target)  # only to a configured partner (the one giving may be gone)
    except PartnerConfigError as error:
        raise fail(shown(str(error), limit=None)) from None
    try:
        before = give(build_ownership(settings), settings.bucket, _key_bytes(key), source, target)
    except NotOwned as error:
        owned_by = error.args[0]
        if owned_by is None:
            raise fail(
                f"no partner owns key '{shown(key)}': '{shown(target)}' may simply publish it", EXIT_NOT_FOUND
            ) from None
        raise fail(f"key '{shown(key)}' is owned by '{shown(owned_by)}', not '{shown(source)}'") from None
    # Recorded also when the key was the target's already: a rerun after a failed ledger write records it.
    build_ledger(settings).record_transfer(KeyTransfer(key, _hash_hex(key), source, target, by=_operator()))
    already = " (it was already)" if before == target else ""
    echo(f"key '{shown(key)}' now belongs to partner '{shown(target)}'{already}; recorded in the ledger")


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
