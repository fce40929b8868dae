"""The e2e testbed: a real Docker Engine, Compose v2, a local registry and SSH hosts (tests only).

Entry points: ``python -m tests.testbed up|down|status`` (or ``scripts/testbed.sh``) and the
functions ``provision``, ``teardown`` and ``status`` in :mod:`tests.testbed.provision`.
"""
