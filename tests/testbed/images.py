"""STAND-IN Jitsi images for the e2e testbed: build, cache, push and remove (TESTS ONLY).

No container registry is reachable from our machines, so the real docker-jitsi-meet images
cannot be pulled. This module builds stand-ins that honour the real images' contract (ports,
endpoints, environment variables, uid, required directories, failure modes) from a Debian
bookworm base made with debootstrap, and pushes them to the testbed's local registry under the
names the product's compose files reference:

    <registry>/jitsi/{web,prosody,jicofo,jvb}:{stable-11031,stable-11146-1,stable-11146-2,standin-broken}
    <registry>/jitsi/etherpad:2.0.3
    <registry>/jitsi/excalidraw-backend:2026.3.0

``stable-11031`` uses the pre-rootless layout (root, web on 80/443, data under /config),
``stable-11146-1`` and ``stable-11146-2`` the rootless one (uid 1000, read-only root fs, web on
8000/8443, storage volumes; two tags so an upgrade between rootless releases can be tested), and ``standin-broken`` is rootless with a jvb that never joins the brewery, so the
product's verify gate fails on it (rollback tests). Every image carries the label
``org.jitsi-ops.standin=true``; :func:`remove_all` removes exactly those.

Nothing here is used by the product. Image sources live in ``tests/testbed/images/`` (see its
README.md). CLI: ``python -m tests.testbed.images build|remove`` from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.testbed import system
from tests.testbed.system import TestbedError

IMAGES_DIR = Path(__file__).resolve().parent / "images"

STANDIN_LABEL = "org.jitsi-ops.standin"
RELEASE_LABEL = "org.jitsi-ops.release"
HASH_LABEL = "org.jitsi-ops.content-hash"
BASE_KEY_LABEL = "org.jitsi-ops.base-key"

DEFAULT_REGISTRY = "127.0.0.1:5000"
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jitsi-ops" / "testbed"
)

# Bump when the image recipe changes in a way the hashed files do not capture.
RECIPE_VERSION = "1"

BASE_SUITE = "bookworm"
BASE_IMAGE = f"jitsi-ops-standin-base:{BASE_SUITE}"
# debootstrap does not resolve virtual packages, so prosody's Lua libraries are named.
BASE_PACKAGES = (
    "nginx-light",
    "prosody",
    "python3",
    "ca-certificates",
    "openssl",
    "lua-bitop",
    "lua-sec",
    "lua-socket",
    "lua-expat",
    "lua-filesystem",
    "lua-unbound",
    "tini",
)
# Trimmed from the rootfs: nothing in the images reads them, and they are a third of its size.
_TRIM_PATHS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/common-licenses",
    "var/log",
)
# The in-image account that the rootless layout runs as, like upstream's uid/gid 1000.
RUNTIME_UID = 1000
RUNTIME_USER = "jitsi"

Layout = Literal["rootless", "legacy"]


@dataclass(frozen=True)
class Release:
    """One stand-in release tag of the four core Jitsi images."""

    tag: str
    layout: Layout
    broken: bool = False


RELEASES: tuple[Release, ...] = (
    Release("stable-11031", "legacy"),
    Release("stable-11146-1", "rootless"),
    Release("stable-11146-2", "rootless"),
    Release("standin-broken", "rootless", broken=True),
)
JITSI_SERVICES: tuple[str, ...] = ("web", "prosody", "jicofo", "jvb")
# build dir -> (repository under <registry>/jitsi, tag): the upstream third-party images.
THIRD_PARTY: Mapping[str, tuple[str, str]] = {
    "etherpad": ("etherpad", "2.0.3"),
    "whiteboard": ("excalidraw-backend", "2026.3.0"),
}
# Which pinned wheel sets (top-level names in wheels.txt) each image installs.
_WHEELS_FOR: Mapping[str, tuple[str, ...]] = {
    "jicofo": ("slixmpp",),
    "jvb": ("slixmpp", "aioice"),
    "whiteboard": ("python-socketio", "uvicorn", "wsproto"),
}

Log = Callable[[str], object]


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: its reference, build directory and build arguments."""

    ref: str
    build_dir: str
    release: str
    build_args: Mapping[str, str]


def image_specs(registry: str = DEFAULT_REGISTRY) -> list[ImageSpec]:
    """Every stand-in image this module builds, in build order."""
    specs: list[ImageSpec] = []
    for release in RELEASES:
        for service in JITSI_SERVICES:
            args = {"LAYOUT": release.layout, "RELEASE": release.tag}
            if service == "jvb":
                args["BROKEN"] = "1" if release.broken else "0"
            specs.append(
                ImageSpec(f"{registry}/jitsi/{service}:{release.tag}", service, release.tag, args)
            )
    for build_dir, (repo, tag) in THIRD_PARTY.items():
        specs.append(ImageSpec(f"{registry}/jitsi/{repo}:{tag}", build_dir, tag, {"RELEASE": tag}))
    return specs


# --------------------------------------------------------------------------------------------
# Small process helpers (output kept for error messages, never secrets: none pass through here)


def _run(
    argv: Sequence[str],
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
) -> str:
    """Run a command, returning stdout; raise TestbedError with the output tail on failure."""
    return system.run(argv, timeout=timeout, env=env, stdin=stdin).stdout


def _docker_env() -> dict[str, str]:
    """Environment for the docker CLI: the classic builder, which needs no buildx plugin."""
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def _image_labels(ref: str) -> dict[str, str] | None:
    """Labels of a local image, or None when the image does not exist."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    labels = json.loads(done.stdout.strip() or "null")
    return dict(labels) if isinstance(labels, dict) else {}


@contextlib.contextmanager
def _stopwatch(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of a block to ``timings[key]``."""
    start = time.monotonic()
    try:
        yield
    finally:
        timings[key] = round(timings.get(key, 0.0) + time.monotonic() - start, 2)


# --------------------------------------------------------------------------------------------
# Debian mirror (read from the machine's apt sources, never hard-coded)


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Stanzas of a deb822 ``.sources`` file as lower-cased key -> value dicts."""
    stanza: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
        elif line[0].isspace() and key:
            stanza[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()


def _apt_sources(etc_apt: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled ``deb`` source in the apt configuration."""
    found: list[tuple[str, list[str]]] = []
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for stanza in _deb822_stanzas(path.read_text(errors="replace")):
            if "deb" not in stanza.get("types", "").split():
                continue
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            suites = stanza.get("suites", "").split()
            found.extend((uri, suites) for uri in stanza.get("uris", "").split())
    lists = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                found.append((line[1], [line[2]]))
    return found


def debian_mirror(suite: str = BASE_SUITE, etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URI debootstrap should use, derived from this machine's apt sources.

    ``JITSI_OPS_DEBIAN_MIRROR`` overrides it. Otherwise the first source serving ``suite`` wins,
    then the first main-archive source (not -security/-updates/-backports) of another suite,
    since a Debian mirror carries every suite.
    """
    override = os.environ.get("JITSI_OPS_DEBIAN_MIRROR", "").strip()
    if override:
        return override
    sources = [(u, s) for u, s in _apt_sources(etc_apt) if re.match(r"(https?|file):", u)]
    for uri, suites in sources:
        if suite in suites:
            return uri
    for uri, suites in sources:
        main_archive = not any(re.search(r"-(security|updates|backports)$", s) for s in suites)
        if suites and main_archive and "security" not in uri:
            return uri
    raise TestbedError(
        f"no Debian mirror found in {etc_apt}/sources.list(.d); "
        "set JITSI_OPS_DEBIAN_MIRROR to a Debian archive URI"
    )


# --------------------------------------------------------------------------------------------
# Python wheels for the images (downloaded on the host, installed offline in the builds)


def _pinned_wheels() -> list[tuple[str, str]]:
    """(normalised name, version) of every pin in images/wheels.txt."""
    pins: list[tuple[str, str]] = []
    for raw in (IMAGES_DIR / "wheels.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((re.sub(r"[-_.]+", "_", name.strip()).lower(), version.strip()))
    return pins


def _wheel_present(wheel_dir: Path, name: str, version: str) -> bool:
    """Whether a wheel file for name==version is in ``wheel_dir``."""
    for path in wheel_dir.glob("*.whl"):
        parts = path.name.split("-")
        normalised = re.sub(r"[-_.]+", "_", parts[0]).lower()
        if len(parts) >= 2 and normalised == name and parts[1] == version:
            return True
    return False


def ensure_wheels(cache_dir: Path, log: Log = print) -> Path:
    """The cache directory of pinned wheels for cp311 manylinux x86_64, downloading what is missing."""
    wheel_dir = cache_dir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    pins = _pinned_wheels()
    if all(_wheel_present(wheel_dir, name, version) for name, version in pins):
        return wheel_dir
    if importlib.util.find_spec("pip") is None:
        raise TestbedError(f"pip is not available in {sys.executable}; install it to fetch wheels")
    log(f"downloading {len(pins)} pinned wheels into {wheel_dir}")
    # The images run Debian bookworm's python3.11 on x86_64; pip picks wheels for that target.
    _run(
        [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64",
            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            "-d", str(wheel_dir), "-r", str(IMAGES_DIR / "wheels.txt"),
        ],
        timeout=600,
    )  # fmt: skip
    missing = [f"{n}=={v}" for n, v in pins if not _wheel_present(wheel_dir, n, v)]
    if missing:
        raise TestbedError(f"pip download did not provide: {', '.join(missing)}")
    return wheel_dir


# --------------------------------------------------------------------------------------------
# The debootstrapped base image, cached as a `docker save` tarball


def _base_key() -> str:
    """Content key of the base recipe: a change rebuilds the base, nothing else does."""
    recipe = {
        "recipe": RECIPE_VERSION,
        "suite": BASE_SUITE,
        "packages": BASE_PACKAGES,
        "trim": _TRIM_PATHS,
        "user": [RUNTIME_USER, RUNTIME_UID],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _scratch_dir(cache_dir: Path) -> Iterator[Path]:
    """A temporary directory for the rootfs, on a tmpfs when we may mount one (~15% faster)."""
    scratch = Path(tempfile.mkdtemp(prefix="standin-rootfs-", dir=cache_dir))
    mounted = False
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "tmpfs", str(scratch)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    try:
        yield scratch
    finally:
        if mounted:
            subprocess.run(["umount", str(scratch)], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def _make_rootfs(rootfs: Path, log: Log) -> None:
    """debootstrap the minimal bookworm system with nginx, prosody and python3, then trim it."""
    if os.geteuid() != 0:
        raise TestbedError("building the stand-in base needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise TestbedError("debootstrap is missing: apt-get install -y debootstrap")
    mirror = debian_mirror()
    log(f"debootstrap {BASE_SUITE} (minbase + {len(BASE_PACKAGES)} packages) from {mirror}")
    _run(
        [
            "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE, str(rootfs), mirror,
        ],
        timeout=900,
        env={**os.environ, "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"},
    )  # fmt: skip
    chroot = ["chroot", str(rootfs)]
    _run([*chroot, "groupadd", "--gid", str(RUNTIME_UID), RUNTIME_USER])
    _run(
        [
            *chroot, "useradd", "--uid", str(RUNTIME_UID), "--gid", str(RUNTIME_UID),
            "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
            RUNTIME_USER,
        ]
    )  # fmt: skip
    for rel in _TRIM_PATHS:
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    # debootstrap leaves the build host's resolver and name here; Docker injects its own.
    for rel in ("etc/resolv.conf", "etc/hostname"):
        with contextlib.suppress(FileNotFoundError):
            (rootfs / rel).unlink()
    if not (rootfs / "usr/bin/tini").exists():
        raise TestbedError("tini is missing from the debootstrapped rootfs")


def ensure_base(cache_dir: Path, log: Log = print) -> str:
    """Make sure the base image exists locally (load the cached tarball or build it); its id."""
    key = _base_key()
    labels = _image_labels(BASE_IMAGE)
    if labels is None or labels.get(BASE_KEY_LABEL) != key:
        tarball = cache_dir / f"standin-base-{BASE_SUITE}-{key[:12]}.tar"
        if tarball.is_file():
            log(f"loading cached base image {tarball.name}")
            _run(["docker", "load", "--quiet", "--input", str(tarball)])
            labels = _image_labels(BASE_IMAGE)
        if labels is None or labels.get(BASE_KEY_LABEL) != key:
            _build_base(cache_dir, key, tarball, log)
    return _run(["docker", "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE]).strip()


def _build_base(cache_dir: Path, key: str, tarball: Path, log: Log) -> None:
    """debootstrap, import into Docker with the stand-in labels, and save the cache tarball."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _scratch_dir(cache_dir) as scratch:
        rootfs = scratch / "rootfs"
        _make_rootfs(rootfs, log)
        log(f"importing the rootfs as {BASE_IMAGE}")
        changes = [
            f"LABEL {STANDIN_LABEL}=true",
            f"LABEL {BASE_KEY_LABEL}={key}",
            "LABEL org.opencontainers.image.description="
            '"jitsi-ops STAND-IN base for test images only, not a Jitsi image"',
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["/bin/bash"]',
        ]
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
            stdout=subprocess.PIPE,
        )
        try:
            argv = ["docker", "import"]
            for change in changes:
                argv += ["--change", change]
            _run([*argv, "-", BASE_IMAGE], stdin=tar.stdout.fileno() if tar.stdout else None)
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise TestbedError(f"tar of the rootfs failed (exit {tar.returncode})")
    for stale in cache_dir.glob(f"standin-base-{BASE_SUITE}-*.tar"):
        stale.unlink()
    partial = tarball.with_suffix(".tar.partial")
    _run(["docker", "save", "--output", str(partial), BASE_IMAGE])
    partial.rename(tarball)
    log(f"cached the base image as {tarball}")


# --------------------------------------------------------------------------------------------
# Image builds


def _tree_digest(digest: hashlib._Hash, root: Path, prefix: str) -> None:
    """Feed every file under ``root`` (path, mode, content) into ``digest`` in a stable order."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = f"{prefix}/{path.relative_to(root).as_posix()}"
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")


def _content_hash(spec: ImageSpec, base_id: str, wheel_dir: Path) -> str:
    """A hash of everything that goes into one image; equal hash = nothing to rebuild."""
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_VERSION}\0{base_id}\0{spec.ref}\0".encode())
    digest.update(json.dumps(dict(spec.build_args), sort_keys=True).encode())
    _tree_digest(digest, IMAGES_DIR / spec.build_dir, "svc")
    _tree_digest(digest, IMAGES_DIR / "jitsi_standin", "pkg")
    if spec.build_dir in _WHEELS_FOR:
        digest.update("\0".join(sorted(p.name for p in wheel_dir.glob("*.whl"))).encode())
    return digest.hexdigest()


def _stage_context(build_dir: str, wheel_dir: Path, dest: Path) -> None:
    """Assemble a build context: the image's own dir, the shared package, wheels if needed."""
    shutil.copytree(IMAGES_DIR / build_dir, dest, dirs_exist_ok=True)
    shutil.copytree(
        IMAGES_DIR / "jitsi_standin",
        dest / "jitsi_standin",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = dest / "wheels"
    wheels.mkdir()
    if build_dir in _WHEELS_FOR:
        for whl in wheel_dir.glob("*.whl"):
            shutil.copy2(whl, wheels / whl.name)
        (wheels / "install.txt").write_text("\n".join(_WHEELS_FOR[build_dir]) + "\n")


def _build_image(spec: ImageSpec, base_id: str, content: str, context: Path) -> None:
    """docker build one image with the classic builder (works offline on engine 20.10)."""
    # --network none: the builds are offline by design, and RUN then needs no docker0 bridge;
    # --force-rm: a failed RUN leaves no stopped container behind.
    argv = ["docker", "build", "--quiet", "--force-rm", "--network", "none", "--tag", spec.ref]
    argv += ["--build-arg", f"BASE={BASE_IMAGE}"]
    for key, value in sorted(spec.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    argv += ["--label", f"{HASH_LABEL}={content}", "--label", f"{STANDIN_LABEL}=true"]
    argv += ["--label", f"org.jitsi-ops.base-image={base_id}", str(context)]
    _run(argv, env=_docker_env(), timeout=600)


def _registry_digest(registry: str, repo: str, tag: str) -> str | None:
    """The manifest digest the registry holds for repo:tag, or None."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            digest = response.headers.get("Docker-Content-Digest")
    except (urllib.error.URLError, OSError):
        return None
    return str(digest) if digest else None


def _needs_push(ref: str) -> bool:
    """Whether the registry lacks this exact local image (compares manifest digests)."""
    registry, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    remote = _registry_digest(registry, repo, tag)
    if remote is None:
        return True
    out = _run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref])
    local = {
        d.split("@", 1)[1] for d in json.loads(out or "[]") if d.startswith(f"{registry}/{repo}@")
    }
    return remote not in local


def build_all(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    registry: str = DEFAULT_REGISTRY,
    log: Log = print,
) -> dict[str, float]:
    """Build the base (cached), every stand-in image for every tag, and push them one by one.

    Idempotent: an image whose content-hash label matches is not rebuilt, and an image the
    registry already holds with the same digest is not pushed again, so a warm run takes a few
    seconds. Returns wall times in seconds per phase (``wheels``, ``base``, ``build``,
    ``push``, ``total``) plus the counts ``built`` and ``pushed``.
    """
    timings: dict[str, float] = {}
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _stopwatch(timings, "total"):
        with _stopwatch(timings, "wheels"):
            wheel_dir = ensure_wheels(cache_dir, log)
        with _stopwatch(timings, "base"):
            base_id = ensure_base(cache_dir, log)
        built = 0
        with _stopwatch(timings, "build"), tempfile.TemporaryDirectory(prefix="standin-") as tmp:
            staged: dict[str, Path] = {}
            for spec in image_specs(registry):
                content = _content_hash(spec, base_id, wheel_dir)
                labels = _image_labels(spec.ref)
                if labels is not None and labels.get(HASH_LABEL) == content:
                    continue
                if spec.build_dir not in staged:
                    staged[spec.build_dir] = Path(tmp) / spec.build_dir
                    _stage_context(spec.build_dir, wheel_dir, staged[spec.build_dir])
                start = time.monotonic()
                _build_image(spec, base_id, content, staged[spec.build_dir])
                built += 1
                log(f"built {spec.ref} in {time.monotonic() - start:.1f} s")
        pushed = 0
        with _stopwatch(timings, "push"):
            # One at a time: parallel pushes to the local registry are slower (testbed.md).
            for spec in image_specs(registry):
                if _needs_push(spec.ref):
                    _run(["docker", "push", "--quiet", spec.ref], timeout=300)
                    pushed += 1
            if pushed:
                log(f"pushed {pushed} image(s) to {registry}")
    timings["built"] = float(built)
    timings["pushed"] = float(pushed)
    return timings


# --------------------------------------------------------------------------------------------
# Realistic sizes (bench only): the stand-ins plus one layer of incompressible bytes
#
# The stand-ins are a few MB above a shared base layer that every host already has, so an
# upgrade between two stand-in releases pulls almost nothing, while a real host pulls the real
# images' compressed layers. The bench (tests/bench/bench_deploy.py) therefore also deploys
# "sized" stand-ins: <registry>/jitsi-sized/<service>:<tag>, each the stand-in image plus one
# layer of pseudo-random bytes (gzip cannot shrink them), generated from a seed so the same
# release always gets the same bytes (same layer digest: the registry keeps one copy and a
# rebuild changes nothing). Normal e2e images stay small: only the bench builds these.

SIZED_REPO = "jitsi-sized"
PADDING_VERSION = "1"  # bump when the padding recipe changes
_MB = 1_000_000  # Docker Hub's "Compressed size" column counts decimal MB
# Compressed (amd64) sizes of the real images, in MB. SOURCE: no published figure could be
# found from this machine (Docker Hub's and ghcr.io's tag pages, the docker-jitsi-meet issues
# and docs were searched); these are ESTIMATES from the images' composition: jitsi/base is
# debian:bookworm-slim (~28 MB compressed) + s6-overlay, tpl and tools (~45 MB in all);
# jitsi/base-java adds an OpenJDK 17 headless JRE (~105 MB in all); web adds nginx, the
# jitsi-meet web bundle and certbot; prosody adds prosody + Lua modules; jicofo and jvb add
# their jars. Replace them by measured figures (`docker manifest inspect` on a connected
# machine: sum of the layers' sizes) when available.
REAL_IMAGE_MB: Mapping[str, Mapping[str, int]] = {
    "stable-11146-2": {"web": 120, "prosody": 80, "jicofo": 145, "jvb": 150},
    "stable-11031": {"web": 118, "prosody": 78, "jicofo": 143, "jvb": 148},
}
# Layers the real images share (pulled once per host per release): base under all four,
# base-java under jicofo and jvb. Counted in the first image that has them (web, jicofo):
# the padding of the four images adds up to the bytes a real host pulls for the release.
SHARED_BASE_MB = 45
SHARED_BASE_JAVA_MB = 105 - SHARED_BASE_MB


def upgrade_pull_mb(release: str) -> dict[str, int]:
    """MB each service's padding layer carries so that an upgrade to `release` pulls what a real
    host pulls: every image's compressed size, the shared base layers once (a release rebuilds
    them, so an upgrade pulls them too). stable-11146-1 borrows stable-11146-2's figures."""
    sizes = REAL_IMAGE_MB["stable-11146-2" if release.startswith("stable-11146") else release]
    return {
        "web": sizes["web"],
        "prosody": sizes["prosody"] - SHARED_BASE_MB,
        "jicofo": sizes["jicofo"] - SHARED_BASE_MB,
        "jvb": sizes["jvb"] - SHARED_BASE_MB - SHARED_BASE_JAVA_MB,
    }


def write_padding(path: Path, seed: str, size: int, chunk: int = 8 * 1024 * 1024) -> None:
    """`size` pseudo-random bytes from `seed` (the same seed always gives the same file)."""
    generator = random.Random(seed)  # filler bytes, not a secret
    with path.open("wb") as handle:
        left = size
        while left > 0:
            handle.write(generator.randbytes(min(chunk, left)))
            left -= chunk
    os.utime(path, (0, 0))  # a fixed mtime: the layer's tar (and digest) does not vary


def sized_ref(registry: str, service: str, tag: str) -> str:
    """<registry>/jitsi-sized/<service>:<tag>."""
    return f"{registry}/{SIZED_REPO}/{service}:{tag}"


def build_sized(
    tags: Sequence[str],
    cache_dir: Path = DEFAULT_CACHE_DIR,
    registry: str = DEFAULT_REGISTRY,
    log: Log = print,
) -> dict[str, float]:
    """Build (if changed) and push the sized stand-ins of `tags`; build_all() first (the normal
    stand-ins are their bottom layers). Returns phase times plus the MB of padding per tag."""
    timings = build_all(cache_dir, registry, log=log)
    with _stopwatch(timings, "sized"), tempfile.TemporaryDirectory(prefix="standin-sized-") as tmp:
        for tag in tags:
            for service, megabytes in upgrade_pull_mb(tag).items():
                source = f"{registry}/jitsi/{service}:{tag}"
                target = sized_ref(registry, service, tag)
                source_id = _run(["docker", "image", "inspect", "--format", "{{.Id}}", source])
                seed = f"jitsi-ops-standin-padding/{PADDING_VERSION}/{service}/{tag}"
                content = hashlib.sha256(
                    f"{source_id.strip()}\0{seed}\0{megabytes}".encode()
                ).hexdigest()
                labels = _image_labels(target)
                if labels is None or labels.get(HASH_LABEL) != content:
                    context = Path(tmp) / f"{service}-{tag}"
                    context.mkdir()
                    write_padding(context / "padding.bin", seed, megabytes * _MB)
                    (context / "Dockerfile").write_text(
                        f"FROM {source}\nCOPY padding.bin /opt/standin-padding/padding.bin\n"
                    )
                    argv = ["docker", "build", "--quiet", "--force-rm", "--network", "none"]
                    argv += ["--tag", target, "--label", f"{HASH_LABEL}={content}", str(context)]
                    _run(argv, env=_docker_env(), timeout=600)
                    shutil.rmtree(context)
                    log(f"built {target} (+{megabytes} MB padding)")
                if _needs_push(target):
                    _run(["docker", "push", "--quiet", target], timeout=600)
                    log(f"pushed {target}")
            timings[f"padding MB {tag}"] = float(sum(upgrade_pull_mb(tag).values()))
    return timings


def _labelled(all_layers: bool) -> list[str]:
    """``repo:tag id`` lines of the local stand-in images (intermediate build layers too)."""
    argv = ["docker", "image", "ls", "--filter", f"label={STANDIN_LABEL}=true"]
    argv += ["--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]
    return _run([*argv, "--all"] if all_layers else argv).splitlines()


def remove_all() -> None:
    """Remove every local image labelled ``org.jitsi-ops.standin=true`` (all tags of each).

    Raises TestbedError naming the containers when some image cannot go because a running
    container still uses it (``docker compose down`` the stacks first).
    """
    refs = sorted(
        {
            line.split(" ", 1)[0]
            for line in _labelled(all_layers=False)
            if "<none>" not in line.split(" ", 1)[0]
        }
    )
    # Untag by name first (one image may carry several tags), then delete what is left by id:
    # dangling rebuilds and the classic builder's intermediate layers, which inherit the label.
    if refs:
        subprocess.run(
            ["docker", "image", "rm", "--force", *refs], capture_output=True, check=False
        )
    for _ in range(3):
        ids = sorted({line.rsplit(" ", 1)[-1] for line in _labelled(all_layers=True)})
        if not ids:
            return
        subprocess.run(["docker", "image", "rm", "--force", *ids], capture_output=True, check=False)
    ids = sorted({line.rsplit(" ", 1)[-1] for line in _labelled(all_layers=True)})
    if not ids:
        return
    users = _run(["docker", "ps", "--all", "--format", "{{.Names}} {{.Image}}"]).splitlines()
    in_use = sorted({u.split(" ", 1)[0] for u in users if any(i in u for i in ids)})
    raise TestbedError(
        f"{len(ids)} stand-in image(s) could not be removed"
        + (f"; still used by containers: {', '.join(in_use)}" if in_use else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``build`` (default) or ``remove``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed.images",
        description="Build/push or remove the STAND-IN Jitsi test images (tests only).",
    )
    parser.add_argument("action", nargs="?", choices=("build", "remove"), default="build")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="cache dir")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="registry host:port")
    args = parser.parse_args(argv)
    try:
        if args.action == "remove":
            remove_all()
            print("removed every image labelled org.jitsi-ops.standin=true")
            return 0
        timings = build_all(args.cache_dir, args.registry)
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v:g}" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
