"""A non-root deploy user on the sandbox host, who needs sudo (with a password) for everything.

The user is not in the docker group: every command jitsi-ops runs as it must go through sudo,
which is what the sudo e2e test proves. Its random password is in ``<state>/sudo_password``
(0600); it logs in with the testbed's client key through ``Host sandbox-sudo`` in the client
ssh_config. The user, its home and the sudoers drop-in are recorded in provisioned.json, and
``down`` removes exactly those.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from .state import Action, Layout, State
from .system import Log, TestbedError, find_exe, run, write_if_changed

SUDO_USER = "jitsi-ops-deploy"
SUDO_ALIAS = "sandbox-sudo"
SUDOERS = Path("/etc/sudoers.d/jitsi-ops-testbed")


def password_file(layout: Layout) -> Path:
    """Where the user's password is kept for the tests (0600, in the state dir)."""
    return layout.state / "sudo_password"


def authorized_keys_file(home: Path) -> Path:
    """The user's own AuthorizedKeysFile (sshd reads it as that user)."""
    return home / ".ssh" / "authorized_keys"


def home_of(user: str = SUDO_USER) -> Path:
    """The home directory useradd gives the user (also before it exists: for sshd_config)."""
    with contextlib.suppress(KeyError):
        return Path(pwd.getpwnam(user).pw_dir)
    return Path("/home") / user


def render_sudoers(user: str) -> str:
    """The drop-in: everything as root, always with the user's password."""
    return "\n".join(
        [
            "# written by the jitsi-ops testbed (tests/testbed/sudouser.py);"
            " removed by `python -m tests.testbed down`",
            # No first-use lecture: it would leave a record under /var/lib/sudo behind.
            f"Defaults:{user} !lecture",
            f"{user} ALL=(ALL:ALL) ALL",
            "",
        ]
    )


def ensure_sudo_user(layout: Layout, state: State) -> Action:
    """Create (or check) the user, its password, its authorized key and its sudoers rule."""
    created = _ensure_user(state)
    secret_file = password_file(layout)
    fresh_secret = not secret_file.is_file()
    if fresh_secret:
        write_if_changed(secret_file, secrets.token_urlsafe(24) + "\n", 0o600)
    if created or fresh_secret:
        _set_password(SUDO_USER, secret_file.read_text().strip())
    keys_changed = _ensure_authorized_key(layout, home_of())
    sudoers_changed = _ensure_sudoers(state, render_sudoers(SUDO_USER))
    changed = created or fresh_secret or keys_changed or sudoers_changed
    return Action.CREATED if changed else Action.REUSED


def _ensure_user(state: State) -> bool:
    if user_exists(SUDO_USER):
        if SUDO_USER not in state.users:
            raise TestbedError(
                f"user {SUDO_USER} exists but the testbed did not create it; remove it by hand"
            )
        return False
    # Recorded first, so a run that fails halfway can still be torn down.
    state.remember("users", SUDO_USER)
    run(
        [
            find_exe("useradd"),
            "--create-home",
            "--user-group",
            "--shell",
            "/bin/bash",
            "--comment",
            "jitsi-ops testbed deploy user",
            SUDO_USER,
        ]
    )
    return True


def _set_password(user: str, secret: str) -> None:
    # On stdin, never on a command line; chpasswd does not echo it in its errors.
    done = subprocess.run(
        [find_exe("chpasswd")],
        input=f"{user}:{secret}\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise TestbedError(f"chpasswd for {user} failed (exit {done.returncode})")


def _ensure_authorized_key(layout: Layout, home: Path) -> bool:
    """The client public key in the user's ~/.ssh/authorized_keys, owned by the user."""
    entry = pwd.getpwnam(SUDO_USER)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, entry.pw_uid, entry.pw_gid)
    target = authorized_keys_file(home)
    changed = write_if_changed(target, layout.key.with_suffix(".pub").read_text(), 0o600)
    os.chown(target, entry.pw_uid, entry.pw_gid)
    return changed


def _ensure_sudoers(state: State, text: str) -> bool:
    """Install the drop-in atomically, only after `visudo -c` accepted it."""
    with contextlib.suppress(OSError):
        if SUDOERS.read_text() == text:
            return False
    state.remember("files", str(SUDOERS))
    visudo = find_exe("visudo")
    with tempfile.TemporaryDirectory(prefix="jitsiops-sudoers-") as tmp:
        candidate = Path(tmp) / "sudoers"
        candidate.write_text(text)
        candidate.chmod(0o440)
        run([visudo, "-c", "-f", str(candidate)])
    # sudo skips names with a dot in /etc/sudoers.d: the half-written file is never read.
    staged = SUDOERS.with_name(f".{SUDOERS.name}.tmp")
    staged.write_text(text)
    staged.chmod(0o440)
    staged.replace(SUDOERS)
    return True


def remove_sudo_user(state: State, log: Log) -> None:
    """Teardown: the sudoers drop-in first, then the user with its home and group."""
    for name in state.files:
        path = Path(name)
        if path.exists():
            path.unlink()
            log(f"  removed {path}")
    for user in state.users:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        home = Path(entry.pw_dir)
        # Private upload dirs a killed jitsi-ops run left in /tmp (userdel does not look there).
        for leftover in Path("/tmp").glob(".jitsi-ops-*"):
            with contextlib.suppress(OSError):
                if leftover.lstat().st_uid == entry.pw_uid and leftover.is_dir():
                    shutil.rmtree(leftover)
        # -r: its home and mail spool too (exit 12 when it had no mail spool: checked below);
        # the user group goes with it (USERGROUPS_ENAB).
        run([find_exe("userdel"), "-r", user], check=False)
        if user_exists(user):
            raise TestbedError(f"userdel {user} failed (is a process of it still running?)")
        if home.is_dir() and home.name == user:
            shutil.rmtree(home, ignore_errors=True)
        log(f"  removed user {user} and its home")


def user_exists(user: str) -> bool:
    """Whether the system knows this user."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
