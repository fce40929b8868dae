"""Environments with bridge hosts on the testbed: the sandbox environment as main host plus the
namespaced hosts jvb1..jvbN as role 'jvb' hosts (the e2e tests' and the bench's).

Each bridge host reaches prosody on the main host's private address (netns.MAIN_PRIVATE_ADDRESS,
where XMPP_PUBLISH_ADDRESS publishes it) and keeps its stack, CONFIG and backups in directories
of its own under `root`: the namespaces share the machine's filesystem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .netns import MAIN_PRIVATE_ADDRESS


def bridge_host_table(n: int, root: Path) -> str:
    """deploy.toml's [[hosts]] table of jvbN, its directories under root/jvbN."""
    home = root / f"jvb{n}"
    # No private candidates: the bridge's container network lives in its namespace, and a
    # probe sent there from the machine would leave through the default route.
    return f"""
[[hosts]]
address = "jvb{n}"
role = "jvb"
stack_dir = "{home / "stack"}"
backup_dir = "{home / "backups"}"
values = {{ JVB_XMPP_SERVER = "{MAIN_PRIVATE_ADDRESS}", JVB_ADVERTISE_IPS = "10.231.{n}.2", JVB_ADVERTISE_PRIVATE_CANDIDATES = "0", PUBLISH_ADDRESS = "", CONFIG = "{home / "config"}" }}
"""


def fleet_checkout(repo: Path, directory: Path, bridges: int, root: Path) -> Path:
    """An operator checkout in `directory` (compose/, env/, tasks.py of `repo`) whose sandbox
    environment has jvb1..jvbN as bridge hosts, their directories under `root`."""
    shutil.copytree(repo / "compose", directory / "compose")
    shutil.copytree(repo / "env", directory / "env")  # secrets.env: the sandbox's own
    shutil.copy(repo / "tasks.py", directory / "tasks.py")
    testbed = repo / ".testbed"
    toml = directory / "env" / "sandbox" / "deploy.toml"
    text = (
        toml.read_text()
        .replace('"../../.testbed/ssh_config"', json.dumps(str(testbed / "ssh_config")))
        .replace('"../../.testbed/known_hosts"', json.dumps(str(testbed / "known_hosts")))
    )
    tables = "".join(bridge_host_table(n, root) for n in range(1, bridges + 1))
    # The bridge hosts go right after the main host's table (before [ssh]).
    toml.write_text(text.replace("\n[ssh]", tables + "\n[ssh]", 1))
    values = directory / "env" / "sandbox" / "jitsi.env"
    values.write_text(values.read_text() + f"XMPP_PUBLISH_ADDRESS={MAIN_PRIVATE_ADDRESS}\n")
    return directory
