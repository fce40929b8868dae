"""``healthcheck.sh`` for the stand-ins: GET one URL, print the body, exit like curl --fail.

Upstream's scripts are ``curl --fail-with-body <url>``; this is the curl-free equivalent
(exit 0 on 2xx, 22 on an HTTP error, 7 when nothing answers).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    """Probe ``argv[1]``."""
    if len(argv) != 2:
        print("usage: python3 -m jitsi_standin.healthcheck URL", file=sys.stderr)
        return 2
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(argv[1], timeout=5) as response:
            sys.stdout.write(response.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:
        sys.stdout.write(exc.read().decode(errors="replace"))
        print(f"\nhealthcheck: {argv[1]} answered {exc.code}", file=sys.stderr)
        return 22
    except OSError as exc:
        print(f"healthcheck: {argv[1]}: {exc}", file=sys.stderr)
        return 7


if __name__ == "__main__":
    sys.exit(main(sys.argv))
