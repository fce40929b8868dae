"""STAND-IN implementations of the docker-jitsi-meet containers, for jitsi-ops tests ONLY.

This package is copied into every stand-in image built by ``tests/testbed/images.py``. It is
not Jitsi and not part of the jitsi-ops product: it reproduces just enough of the real images'
contract (ports, endpoints, environment variables, uid, directories, failure modes) for the
e2e tests. Each container runs ``python3 -m jitsi_standin.<service>`` under tini.
"""
