#!/bin/sh
# jitsi-ops STAND-IN (tests only): like upstream's `curl --fail-with-body .../health`.
exec python3 -m jitsi_standin.healthcheck "http://127.0.0.1:${PROSODY_HTTP_PORT:-5280}/health"
