"""CLI of the e2e testbed: ``python -m tests.testbed up|down|status`` from the repository root."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .packages import ensure_packages
from .provision import MAX_EXTRA_HOSTS, provision, status, teardown
from .system import TestbedError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed",
        description="Provision or remove the jitsi-ops e2e testbed (tests only, needs root).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="provision (idempotent; a second run is a fast re-check)")
    up.add_argument(
        "--hosts",
        type=int,
        default=0,
        metavar="N",
        help=f"extra hosts jvb1..jvbN in network namespaces (0-{MAX_EXTRA_HOSTS}, default 0)",
    )
    up.add_argument(
        "--install-packages",
        action="store_true",
        help="apt-install missing packages (root only; implied by CI=true)",
    )
    up.add_argument(
        "--skip-images", action="store_true", help="do not build/push the stand-in images"
    )
    down = sub.add_parser("down", help="remove everything `up` created or started")
    down.add_argument(
        "--keep-standins",
        action="store_true",
        help="leave stand-in containers and images in the engine (a shared dev engine)",
    )
    sub.add_parser("status", help="show what is provisioned and alive (exit 1 if not healthy)")
    packages = sub.add_parser(
        "packages", help="check (or install) the system packages only: engine, Compose v2, sshd"
    )
    packages.add_argument(
        "--install-packages",
        action="store_true",
        help="apt-install missing packages (root only; implied by CI=true)",
    )
    return parser


def _print_status() -> int:
    result = status()
    if not result.provisioned:
        print(f"testbed: not provisioned (no state in {result.state_dir})")
        return 1
    print(f"testbed state: {result.state_dir}")
    for check in result.checks:
        mark = "ok  " if check.ok else "DOWN"
        print(f"  {mark} {check.name:<24} {check.detail}")
    return 0 if result.healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one testbed command; expected failures print one line and exit 1."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            provision(
                hosts=args.hosts,
                install_packages=args.install_packages,
                build_images=not args.skip_images,
            )
        elif args.command == "packages":
            ensure_packages(args.install_packages, print)
        elif args.command == "down":
            teardown(keep_standins=args.keep_standins)
        else:
            return _print_status()
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("testbed: interrupted; `python -m tests.testbed down` cleans up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
