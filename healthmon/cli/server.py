"""``serve``: the dashboard and the REST API / CDS Hooks service in one process."""

from __future__ import annotations

import argparse
import sys

from healthmon.config import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the dashboard at / and the API at /api/v1 (with CDS Hooks at "
                                         "/cds-services) in one uvicorn process")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                           "only; put a TLS proxy in front before opening it up)")
    serve.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    print(f"healthmon: dashboard at http://{args.host}:{args.port}/, API at http://{args.host}:{args.port}/api/v1 "
          f"(OpenAPI: /api/v1/openapi.json)", file=sys.stderr)
    # By import string, as uvicorn's own CLI does: the app (the only place outside the pages that
    # builds Streamlit) is made in healthmon.ui, and reads the same HEALTHMON_* settings.
    uvicorn.run(SERVER_APP, factory=True, host=args.host, port=args.port, log_level=args.log_level,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", timeout_graceful_shutdown=10,
                access_log=False)  # Streamlit logs each request already
    return 0


SERVER_APP = "healthmon.ui.server:create_server_app"
COMMANDS = {"serve": _cmd_serve}
