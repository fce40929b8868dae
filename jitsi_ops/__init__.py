"""jitsi-ops: safe, verified, reversible upgrades of docker-jitsi-meet over SSH."""

__version__ = "0.1.0"
