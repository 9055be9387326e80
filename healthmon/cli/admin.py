"""Operations commands: the database schema, the demo build, dashboard accounts and their API tokens,
the reviewed-labels export and the job worker."""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import threading

from healthmon.cli.common import open_database
from healthmon.config import Settings
from healthmon.errors import StorageError
from healthmon.services import accounts as auth
from healthmon.services import tokens
from healthmon.services.accounts import ROLES
from healthmon.services.database import Database, connect_existing, database_status
from healthmon.services.labels import export_format, export_labels

# The demo build and the worker import torch-backed modules when they run, not when the CLI loads.


def add_parsers(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database: apply migrations, show the schema revision")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply every Alembic migration (safe to repeat)")
    db_sub.add_parser("current", help="print the schema revision")

    demo = sub.add_parser("demo", help="build the demo model from synthetic notes if it does not exist, "
                                       "and a demo admin account if nobody can sign in yet")
    demo.add_argument("--force", action="store_true", help="rebuild even if the demo model exists")
    demo.add_argument("--notes", type=int, default=1000, help="synthetic notes to generate")
    demo.add_argument("--summaries", type=int, default=400, help="synthetic home-vitals summaries to add")

    users = sub.add_parser("users", help="dashboard accounts: add, list, change role or password, deactivate, "
                                         "unlock, API tokens")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create an account; prints a generated password once unless "
                                           "--password-stdin is given")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    users_sub.add_parser("list", help="accounts as JSON lines (no password hashes)")
    role = users_sub.add_parser("set-role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    passwd = users_sub.add_parser("passwd", help="set a new password (generated unless --password-stdin); "
                                                 "signs the account out everywhere")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    for verb in ("deactivate", "activate"):
        users_sub.add_parser(verb, help=f"{verb} an account").add_argument("name")
    users_sub.add_parser("unlock", help="lift an account's sign-in lock (the third lock in a row lasts until "
                                        "this) and start its lock escalation over").add_argument("name")
    _add_token_parsers(users_sub)
    export = sub.add_parser("export-labels", help="write every reviewed case with its lineage (reviews, "
                                                  "adjudication, model version and scores) to a file")
    export.add_argument("--out", required=True, help="FILE.csv (one row per case; lists joined by |, reviews "
                                                     "and scores as JSON in a cell) or FILE.jsonl (nested)")
    export.add_argument("--actor", default="cli", help="name recorded in the audit log")
    worker = sub.add_parser("worker", help="run background jobs (use with HEALTHMON_WORKER=external on the dashboard)")
    worker.add_argument("--once", action="store_true", help="run the queued jobs, then exit")


def _add_token_parsers(users_sub: argparse._SubParsersAction) -> None:
    token = users_sub.add_parser("token", help="API tokens (Authorization: Bearer) that act as an account, "
                                               "with its current role")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token for an account; prints it once, on stderr")
    create.add_argument("name", help="the account the token acts as")
    create.add_argument("--name", dest="label", default="api", help="a label to recognise the token by, such as "
                                                                     "epic-integration (default: %(default)s)")
    create.add_argument("--days", type=float, default=90, help="lifetime in days, at most 366 (default: %(default)s)")
    listing = token_sub.add_parser("list", help="tokens as JSON lines, revoked and expired ones too (no hashes)")
    listing.add_argument("name", nargs="?", help="only this account's tokens")
    revoke = token_sub.add_parser("revoke", help="revoke every active token of an account, or one by --id")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="the account whose tokens to revoke")
    which.add_argument("--id", type=int, dest="token_id", help="the id of one token (from `users token list`)")


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(database_status(settings, migrate=args.db_command == "upgrade")))
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.demo import build_demo_model

    with contextlib.redirect_stdout(sys.stderr):
        folder, built = build_demo_model(settings, force=args.force, n_notes=args.notes, n_summaries=args.summaries)
    print(json.dumps({"demo_model": str(folder), "built": built}))
    account = auth.ensure_demo_account(open_database(settings))
    if account is not None:
        name, password = account
        print(f"\nDemo sign-in (shown only this once): user {name!r}, password {password!r}.\n"
              "It is an admin account: add people and change this password on the Admin page.", file=sys.stderr)
    return 0


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): the first stdin line with --password-stdin, else a random one."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(12), True


def _cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    factory = open_database(settings)
    command = args.users_command
    if command == "list":
        for row in auth.accounts(factory, None):
            print(json.dumps(row, default=str))
        return 0
    if command == "token":
        return _cmd_token(args, factory)
    if command == "add":
        password, generated = _new_password(args)
        auth.add_user(factory, None, args.name, args.role, password)
    elif command == "passwd":
        password, generated = _new_password(args)
        auth.set_password(factory, None, args.name, password)
    elif command == "set-role":
        auth.set_role(factory, None, args.name, args.role)
    elif command == "unlock":
        auth.unlock(factory, None, args.name)
    else:
        auth.set_active(factory, None, args.name, command == "activate")
    print(json.dumps({"user": args.name, "done": command}))
    if command in ("add", "passwd") and generated:
        print(f"Password for {args.name} (shown only this once): {password}", file=sys.stderr)
    return 0


def _cmd_token(args: argparse.Namespace, factory: Database) -> int:
    command = args.token_command
    if command == "create":
        token, view = tokens.create_token(factory, None, args.name, args.label, days=args.days)
        print(json.dumps({"account": view.account, "token_id": view.id, "name": view.name,
                          "expires_at": view.expires_at.isoformat()}))
        print(f"API token for {view.account} (shown only this once): {token}", file=sys.stderr)
    elif command == "list":
        for view in tokens.list_tokens(factory, None, args.name):
            print(json.dumps(view.to_dict()))
    elif args.token_id is not None:
        print(json.dumps(tokens.revoke_token(factory, None, args.token_id).to_dict()))
    else:
        print(json.dumps({"account": args.name, "revoked": tokens.revoke_account_tokens(factory, None, args.name)}))
    return 0


def _cmd_export_labels(args: argparse.Namespace, settings: Settings) -> int:
    fmt = export_format(args.out)  # before touching the database: a wrong suffix is said at once
    factory = connect_existing(settings)
    if factory is None:  # reading must not create an empty database and export nothing from it
        raise StorageError("the dashboard's database", f"no database at {settings.resolved_database_url}",
                           "set HEALTHMON_DATABASE_URL or HEALTHMON_DATA_DIR as the dashboard has them")
    rows = export_labels(factory, args.actor, args.out)
    print(json.dumps({"rows": rows, "format": fmt, "out": str(args.out)}))
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.model.classifier import Classifier
    from healthmon.services.worker import Worker

    loaded: dict[str, Classifier] = {}

    def load(folder: str) -> Classifier:
        if folder not in loaded:  # keep models warm between jobs
            loaded[folder] = Classifier.from_pretrained(folder, settings=settings)
        return loaded[folder]

    worker = Worker(open_database(settings), settings, load)
    if args.once:
        worker.fail_stale()
        ran = 0
        while worker.run_once() is not None:
            ran += 1
        print(json.dumps({"jobs_run": ran}))
        return 0
    print(f"healthmon worker {worker.name}: waiting for jobs (Ctrl-C stops)", file=sys.stderr)
    try:
        worker.run_forever(threading.Event())
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = {"db": _cmd_db, "demo": _cmd_demo, "users": _cmd_users, "export-labels": _cmd_export_labels,
            "worker": _cmd_worker}
