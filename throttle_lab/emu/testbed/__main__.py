"""The processes the testbed starts inside its namespaces.

``python -m throttle_lab.emu.testbed relay|serve|fetch|origin|lab-daemon ...``; argparse
rather than click because these start once per transfer and should import as little as
possible (the scenario testbed's parts are imported only when asked for).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from throttle_lab.emu.testbed._hooks import load_hook_factory
from throttle_lab.emu.testbed._relay_control import run_relay
from throttle_lab.emu.testbed._transfer import fetch_main, serve_main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m throttle_lab.emu.testbed")
    commands = parser.add_subparsers(dest="command", required=True)

    relay = commands.add_parser("relay", help="bridge two veths (run in the middlebox netns)")
    relay.add_argument("--client-if", required=True)
    relay.add_argument("--server-if", required=True)
    relay.add_argument("--one-way-delay", type=float, required=True, help="seconds")
    relay.add_argument("--hook", default="throttle_lab.emu.testbed._hooks:pass_hook")
    relay.add_argument("--hook-kwargs", default="{}", help="JSON object")

    serve = commands.add_parser("serve", help="transfer server (run in the server netns)")
    serve.add_argument("--host", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--cc", default="cubic", help="congestion control of the sender")

    fetch = commands.add_parser("fetch", help="transfer client (run in the client netns)")
    fetch.add_argument("--host", required=True)
    fetch.add_argument("--port", type=int, required=True)
    fetch.add_argument("--size", type=int, required=True, help="bytes")
    fetch.add_argument("--timeout", type=float, required=True, help="seconds")
    fetch.add_argument("--cc", default="cubic", help="congestion control of the client")

    origin = commands.add_parser("origin", help="HTTPS and HTTP origin (server netns)")
    origin.add_argument("--host", required=True)
    origin.add_argument("--ca-out", required=True, help="where the CA (PEM) goes")
    origin.add_argument("--scenario", help="serve this scenario's media names")
    origin.add_argument("--set", action="append", default=[], help="scenario override")

    daemon = commands.add_parser("lab-daemon", help="the scenario testbed's daemon")
    daemon.add_argument("--state-dir", required=True)

    args = parser.parse_args(argv)
    if args.command == "origin":
        from throttle_lab.emu.testbed._lab_origin import serve_origin

        serve_origin(
            args.host, ca_out=Path(args.ca_out), scenario_path=args.scenario, overrides=args.set
        )
    elif args.command == "lab-daemon":
        from throttle_lab.emu.testbed._lab_daemon import run_lab_daemon

        sys.exit(run_lab_daemon(Path(args.state_dir)))
    elif args.command == "relay":
        run_relay(
            args.client_if,
            args.server_if,
            one_way_delay_s=args.one_way_delay,
            hook_factory=load_hook_factory(args.hook),
            hook_kwargs=json.loads(args.hook_kwargs),
        )
    elif args.command == "serve":
        serve_main(args.host, args.port, args.cc)
    else:
        fetch_main(args.host, args.port, args.size, args.timeout, args.cc)


if __name__ == "__main__":
    main()
