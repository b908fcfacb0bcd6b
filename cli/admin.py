"""`starter.py admin …`: set a namespace up, write the contract's schemas, lay a development calendar,
make signing keys."""

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from cli import calls, render
from cli.render import Output, OutputFlag
from settings import get_settings

app = typer.Typer(
    no_args_is_help=True,
    short_help="Search attributes, schemas, dev calendar, keys, directory.",
    help="Administration: search attributes, JSON Schemas, the dev calendar, signing and data keys, "
    "the organisation directory.",
)


@app.command()
def setup(output: OutputFlag = Output.text) -> None:
    """Register hallflow's search attributes (idempotent).

    On the namespace hallflow connects to; those present are left as they are."""
    from temporalio.service import RPCError

    from contract import search

    async def ensure(client, _settings) -> list[str]:
        try:
            return await search.ensure_search_attributes(client)
        except RuntimeError as err:  # a name registered with another type
            raise calls.Refused(str(err)) from None
        except RPCError as err:
            raise calls.Refused(f"cannot register search attributes: {err.message}") from None

    added = calls.run(ensure)
    if output is Output.json:
        render.dump({"added": list(added)})
    else:
        render.show("search attributes added: " + (", ".join(added) if added else "none (all present)"))


@app.command()
def schema(out: Path = Path("docs/schemas"), output: OutputFlag = Output.text) -> None:
    """Write the contract's JSON Schemas."""
    written = calls.write_schemas(out)
    if output is Output.json:
        render.dump([str(path) for path in written])
    else:
        render.show(*(str(path) for path in written))


@app.command("dev-calendar")
def dev_calendar(
    out: Annotated[Path, typer.Argument(metavar="OUT", show_default=False)], output: OutputFlag = Output.text
) -> None:
    """DEVELOPMENT ONLY: the calendar with placeholder years.

    data/calendar plus weekends-only placeholders for the years it lacks (make run)."""
    from activities.calendar import with_placeholders

    source = get_settings().calendar_dir
    if refusal := _dev_calendar_refusal(out, source):
        raise calls.Refused(refusal, calls.BAD_INPUT)
    placeholders = list(with_placeholders(source, out, date.today() + timedelta(days=366)))
    for year in placeholders:
        render.warn(
            f"WARNING: no {year}.toml in {source}: {out} has a weekends-only placeholder "
            "(development only; add the State Council's table for production)"
        )
    if output is Output.json:
        render.dump({"calendar": str(out), "placeholders": list(placeholders)})


def _dev_calendar_refusal(out: Path, source: Path) -> str | None:
    """Why OUT must not be written, or None. with_placeholders replaces OUT's <year>.toml files:
    OUT must not overlap the official tables it copies, nor hold other .toml files (data/ holds
    the catalog, the directory and the risk rules), whose presence says OUT is the wrong place."""
    import re

    target, official = out.resolve(), source.resolve()
    hint = "write the development calendar elsewhere (make run uses var/calendar)"
    if target == official:
        return f"{out} is the calendar directory dev-calendar reads from ({source}); {hint}"
    if official.is_relative_to(target):
        return f"{out} contains the calendar directory dev-calendar reads from ({source}); {hint}"
    if target.is_relative_to(official):
        return f"{out} lies inside the calendar directory dev-calendar reads from ({source}); {hint}"
    if target.is_dir():
        others = sorted(p.name for p in target.glob("*.toml") if not re.fullmatch(r"\d{4}\.toml", p.name))
        if others:
            return (f"{out} holds .toml files that are not a calendar's <year>.toml ({', '.join(others)}); "
                    f"it is not a calendar directory: {hint}")
    elif target.exists():
        return f"{out} is not a directory; {hint}"
    return None


keys = typer.Typer(
    no_args_is_help=True, short_help="Signing keys for the actor assertion on every message.",
    help="Signing keys for the actor assertion on every message (security/).",
)
app.add_typer(keys, name="keys")
KEYS_DIR = Path("var/keys")  # development keys; production keeps private keys off the repository's tree


@keys.command("new")
def keys_new(
    principal: Annotated[str, typer.Option(help="whose key: a system id (hallflow-cli) or an officer id")],
    alg: Annotated[Literal["ed25519", "sm2"], typer.Option(help="sm2 where the Chinese SM algorithms are required")] = "ed25519",
    private_out: Annotated[
        Path | None, typer.Option(help="private key file to write (0600) [default: var/keys/<principal>.key]")
    ] = None,
    public_file: Annotated[
        Path | None, typer.Option(help="public keys file to append to [default: HALLFLOW_KEYS_FILE, var/keys/public.toml]")
    ] = None,
    output: OutputFlag = Output.text,
) -> None:
    """Make a signing key pair.

    The private key goes to its own file, the public key is appended to the keys file."""
    from pydantic import ValidationError

    from contract.converter import describe
    from security.keys import KeyFileError, add_public_key, load_public_keys, new_key, save_private, unused_key_id

    private_out = private_out or KEYS_DIR / f"{re.sub(r'[^A-Za-z0-9._-]', '_', principal)}.key"
    public_file = public_file or get_settings().keys_file
    try:
        taken = {k.id for k in load_public_keys(public_file)} if public_file.exists() else set()
        private, public = new_key(principal, alg, unused_key_id(principal, taken))
        save_private(private, private_out)  # refuses to overwrite: an existing key is never lost
        try:
            add_public_key(public_file, public)
        except BaseException:
            private_out.unlink()  # no private key whose public half is nowhere
            raise
    except (KeyFileError, OSError) as err:
        raise calls.Refused(str(err), calls.BAD_INPUT) from None
    except ValidationError as err:
        raise calls.Refused(f"invalid key: {describe(err)}", calls.BAD_INPUT) from None
    if output is Output.json:
        render.dump({"id": private.id, "principal": principal, "alg": alg, "private_file": str(private_out),
                     "public_file": str(public_file)})
    else:
        render.show(private.id)


data_key = typer.Typer(
    no_args_is_help=True, short_help="Data keys: payloads and personal data, encrypted.",
    help="Data keys: payload encryption in Temporal and personal data at rest (docs/security.md).",
)
app.add_typer(data_key, name="data-key")
DataKeysFile = Annotated[
    Path | None, typer.Option("--file", help="data keys file [default: HALLFLOW_DATA_KEYS_FILE, var/keys/data.toml]")
]


@data_key.command("new")
def data_key_new(
    cipher: Annotated[
        Literal["aes-256-gcm", "sm4-gcm"] | None, typer.Option(help="sm4-gcm where Chinese SM ciphers are required [default: HALLFLOW_CIPHER]")
    ] = None,
    key_id: Annotated[str | None, typer.Option("--id", help="the key's id [default: k-<UTC date>]")] = None,
    current: Annotated[bool, typer.Option(help="make it the key new payloads and rows use; --no-current to stage it first")] = True,
    file: DataKeysFile = None,
    output: OutputFlag = Output.text,
) -> None:
    """Add a data key; old keys stay to decrypt.

    Creates the file, with its lookup key, when it is absent."""
    from security.data_keys import DataKeyError, add_key

    settings = get_settings()
    path = file or settings.data_keys_file
    try:
        added, keys = add_key(path, cipher or settings.cipher, key_id, make_current=current)
    except (DataKeyError, OSError, ValueError) as err:
        raise calls.Refused(str(err), calls.BAD_INPUT) from None
    if output is Output.json:
        render.dump({"id": added, "current": keys.current, "file": str(path)})
    else:
        render.show(f"{added}" + (" (current)" if keys.current == added else " (staged; `admin data-key use` makes it current)"))


@data_key.command("use")
def data_key_use(
    key_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)], file: DataKeysFile = None, output: OutputFlag = Output.text
) -> None:
    """Make a listed key current; every listed key still decrypts.

    New payloads and rows use the current key."""
    from security.data_keys import DataKeyError, use_key

    path = file or get_settings().data_keys_file
    try:
        keys = use_key(path, key_id)
    except (DataKeyError, OSError) as err:
        raise calls.Refused(str(err), calls.BAD_INPUT) from None
    if output is Output.json:
        render.dump({"current": keys.current, "file": str(path)})
    else:
        render.show(f"current data key: {keys.current}")


@data_key.command("list")
def data_key_list(file: DataKeysFile = None, output: OutputFlag = Output.text) -> None:
    """The keys by id and cipher, and which is current.

    Never their secrets."""
    from security.data_keys import DataKeyError, parse

    path = file or get_settings().data_keys_file
    try:
        keys = parse(path.read_text(encoding="utf-8"), str(path))
    except (DataKeyError, OSError) as err:
        raise calls.Refused(str(err), calls.BAD_INPUT) from None
    rows = [{"id": key_id, "cipher": key.cipher, "current": key_id == keys.current} for key_id, key in keys.keys.items()]
    if output is Output.json:
        render.dump(rows)
    else:
        render.show(*(f"{r['id']}  {r['cipher']}" + ("  (current)" if r["current"] else "") for r in rows))
