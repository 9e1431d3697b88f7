#!/usr/bin/env bash
# Fuzzes the router's hand-written HTTP/1.1 parsers against net/http's for a
# bounded time each (FUZZTIME, default 60s; go test fuzzes one target per
# invocation). A finding is written to rollout/router/testdata/fuzz/, where
# the ordinary `go test ./...` replays it from then on: commit it with the fix.
# CI runs this with FUZZTIME=20s after the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
for target in FuzzRequestHead FuzzChunked; do
  go test -run - -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-60s}" ./rollout/router
done
