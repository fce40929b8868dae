"""Network namespaces of the extra testbed hosts: namespace, veth pair and addressing.

Host N lives in namespace jitsiops-hN, reached over a veth pair: 10.231.N.1/30 on the machine
side (link jitsiops-hN), 10.231.N.2/30 inside (eth0). No default route: the host can talk to
the machine and to nothing else.

The machine also owns MAIN_PRIVATE_ADDRESS (10.231.0.1, on a link of its own), and every
namespace routes that one address through its veth pair: the main host's address on a private
network that all bridge hosts share, where prosody's XMPP port is published for them
(XMPP_PUBLISH_ADDRESS), as on real machines with a private LAN.
"""

from __future__ import annotations

from pathlib import Path

from .sshhosts import Host
from .state import NETNS_DIR, Action, State
from .system import Log, TestbedError, find_exe, is_mount_point, run, succeeds, unmount

MAIN_PRIVATE_ADDRESS = "10.231.0.1"
MAIN_LINK = "jitsiops-main"  # a veth pair left in the machine's namespace: the address's home


def ensure_main_address(state: State) -> Action:
    """MAIN_PRIVATE_ADDRESS on the machine (no dummy links in a container: a lone veth pair)."""
    ip = find_exe("ip")
    action = Action.REUSED
    if not succeeds([ip, "link", "show", "dev", MAIN_LINK]):
        state.remember("links", MAIN_LINK)
        run([ip, "link", "add", MAIN_LINK, "type", "veth", "peer", "name", f"{MAIN_LINK}-p"])
        action = Action.CREATED
    elif MAIN_LINK not in state.links:
        raise TestbedError(
            f"link {MAIN_LINK} exists but the testbed did not create it "
            f"(remove it with `ip link del {MAIN_LINK}`)"
        )
    for argv in (
        [ip, "addr", "replace", f"{MAIN_PRIVATE_ADDRESS}/32", "dev", MAIN_LINK],
        [ip, "link", "set", f"{MAIN_LINK}-p", "up"],
        [ip, "link", "set", MAIN_LINK, "up"],
    ):
        run(argv)
    return action


def ensure_netns(state: State, host: Host, n: int) -> Action:
    """Namespace, veth pair (10.231.N.1/30 here, .2/30 inside), lo up, no default route."""
    assert host.netns is not None
    ip = find_exe("ip")
    action = Action.REUSED
    if not (NETNS_DIR / host.netns).exists():
        _note_netns_dir(state)
        state.remember("netns", host.netns)
        run([ip, "netns", "add", host.netns])
        action = Action.CREATED
    elif host.netns not in state.netns:
        raise TestbedError(
            f"network namespace {host.netns} exists but the testbed did not create it "
            f"(remove it with `ip netns del {host.netns}`)"
        )
    link = host.netns  # the host side of the pair carries the namespace's name
    if not succeeds([ip, "link", "show", "dev", link]):
        state.remember("links", link)
        run([ip, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
        action = Action.CREATED
    for argv in (
        [ip, "addr", "replace", f"10.231.{n}.1/30", "dev", link],
        [ip, "link", "set", link, "up"],
        [ip, "-n", host.netns, "addr", "replace", f"{host.address}/30", "dev", "eth0"],
        [ip, "-n", host.netns, "link", "set", "eth0", "up"],
        [ip, "-n", host.netns, "link", "set", "lo", "up"],
        [ip, "-n", host.netns, "route", "replace", f"{MAIN_PRIVATE_ADDRESS}/32",
         "via", f"10.231.{n}.1", "dev", "eth0"],
    ):  # fmt: skip
        run(argv)
    return action


def _note_netns_dir(state: State) -> None:
    """`ip netns add` creates /run/netns and bind-mounts it on itself: remember what it adds."""
    if not NETNS_DIR.exists():
        state.remember("empty_dirs", str(NETNS_DIR))
    if not is_mount_point(NETNS_DIR):
        state.remember("mounts", str(NETNS_DIR))


def remove_network(state: State, log: Log) -> None:
    """Our namespaces, the host side of their veth pairs, and /run/netns if we mounted it."""
    ip = find_exe("ip")
    for netns in state.netns:
        if (NETNS_DIR / netns).exists():
            run([ip, "netns", "del", netns])
            log(f"  deleted network namespace {netns}")
    for link in state.links:
        if succeeds([ip, "link", "show", "dev", link]):
            run([ip, "link", "del", link])
    # Left mounted while any namespace (ours or not) still lives in it.
    unmount([p for p in map(Path, state.mounts) if p.is_dir() and not any(p.iterdir())], log)
