"""Account administration from the command line, straight against the database (for
bootstrap: the first administrator cannot be created through an API that needs one).

    python -m services.gateway.admin create-admin EMAIL [--name NAME] [--password-stdin]
    python -m services.gateway.admin create-therapist EMAIL [--name NAME] [--password-stdin]
    python -m services.gateway.admin deactivate EMAIL
    python -m services.gateway.admin reactivate EMAIL
    python -m services.gateway.admin reset-password EMAIL [--password-stdin]
    python -m services.gateway.admin list

Reads TB_DATABASE_URL like the services (and migrates the database first). The password
is prompted for twice, or read from one line of stdin with --password-stdin (scripts);
it is never an argument, so it stays out of shell history and `ps`. Every change is
written to the audit log as a ``cli.*`` action with no acting account. Prints the
account id on stdout. Exit codes: 0 ok, 1 refused (no such account, email taken),
2 usage (bad arguments, short password)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.bootstrap import prepare_database
from shared.db.engine import create_engine, create_session_factory
from shared.settings import Settings, load_settings
from services.gateway import queries
from services.gateway.auth import PasswordService

MIN_PASSWORD = 12  # as the API's AccountCreate / PasswordReset
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise Refused(EXIT_USAGE, "the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise Refused(EXIT_USAGE, f"the password must have at least {MIN_PASSWORD} characters")
    return password


async def _account_id(db: AsyncSession, email: str) -> UUID:
    row = await queries.therapist_by_email(db, email)
    if row is None:
        raise Refused(EXIT_REFUSED, f"no account {email}")
    return row.id


async def _create(db: AsyncSession, args, role: str, passwords: PasswordService) -> UUID:
    password_hash = await passwords.hash_async(args.password)
    account_id = await queries.insert_therapist(db, args.email, password_hash, args.name or "", role=role)
    if account_id is None:
        raise Refused(EXIT_REFUSED, f"an account {args.email} exists")
    await queries.audit(db, None, None, f"cli.create_{role}", target_id=account_id)
    return account_id


async def _set_active(db: AsyncSession, args, active: bool) -> UUID:
    account_id = await _account_id(db, args.email)
    await queries.set_therapist_active(db, account_id, active)
    if not active:
        await queries.revoke_families_of(db, account_id, "deactivated")
    await queries.audit(db, None, None, "cli.reactivate" if active else "cli.deactivate", target_id=account_id)
    return account_id


async def _reset_password(db: AsyncSession, args, passwords: PasswordService) -> UUID:
    account_id = await _account_id(db, args.email)
    await queries.set_password_hash(db, account_id, await passwords.hash_async(args.password))
    await queries.revoke_families_of(db, account_id, "password reset")
    await queries.audit(db, None, None, "cli.reset_password", target_id=account_id)
    return account_id


async def run(settings: Settings, args) -> list[str]:
    """Do the command in one transaction; the lines to print on stdout."""
    await prepare_database(settings.database_url)
    engine = create_engine(settings)
    passwords = PasswordService(max_concurrent=1)
    try:
        async with create_session_factory(engine)() as db, db.begin():
            if args.command == "list":
                return [f"{r.id}\t{r.email}\t{r.role}\t{'active' if r.active else 'deactivated'}"
                        for r in await queries.all_therapists(db)]
            if args.command in ("create-admin", "create-therapist"):
                role = "admin" if args.command == "create-admin" else "therapist"
                return [str(await _create(db, args, role, passwords))]
            if args.command in ("deactivate", "reactivate"):
                return [str(await _set_active(db, args, args.command == "reactivate"))]
            return [str(await _reset_password(db, args, passwords))]
    finally:
        await engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.gateway.admin", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("create-admin", "create an administrator account"),
                            ("create-therapist", "create a therapist account"),
                            ("reset-password", "set a new password; the account's sign-ins end")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("email")
        p.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
        if name.startswith("create"):
            p.add_argument("--name", help="display name")
    for name, help_text in (("deactivate", "the account cannot sign in or refresh; its sign-ins end"),
                            ("reactivate", "undo deactivate")):
        sub.add_parser(name, help=help_text).add_argument("email")
    sub.add_parser("list", help="every account: id, email, role, state")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings("admin")
    try:
        if hasattr(args, "password_stdin"):  # asked before any connection is opened
            args.password = read_password(args.password_stdin)
        lines = asyncio.run(run(settings, args))
    except Refused as exc:
        print(f"admin: {exc.message}", file=sys.stderr)
        return exc.code
    for line in lines:
        print(line)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
