#!/bin/sh
# jitsi-ops STAND-IN (tests only): like upstream's `curl --fail-with-body .../about/health`
# (404 unless JICOFO_ENABLE_HEALTH_CHECKS is set, as in the real image).
exec python3 -m jitsi_standin.healthcheck "http://127.0.0.1:8888/about/health"
