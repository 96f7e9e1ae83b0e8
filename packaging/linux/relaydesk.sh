#!/bin/sh
# /usr/bin/relaydesk: runs the packaged app in /opt/relaydesk. A wrapper, not a symlink, so
# the app's own path (which it re-runs for its workers) is always the real executable.
exec /opt/relaydesk/relaydesk "$@"
