#!/bin/sh
# jitsi-ops STAND-IN (tests only): like upstream's `curl --fail-with-body .../about/health`.
exec python3 -m jitsi_standin.healthcheck "http://127.0.0.1:8080/about/health"
