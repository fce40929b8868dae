"""Test suites of jitsi-ops (unit, cli, e2e) and the e2e testbed."""
