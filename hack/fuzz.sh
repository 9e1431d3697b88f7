#!/usr/bin/env bash
# Fuzzes the router's hand-written HTTP/1.1 parsers against net/http's for a
# bounded time each (FUZZTIME, default 60s; go test fuzzes one target per
# invocation). A finding is written to rollout/router/testdata/fuzz/, where
# the ordinary `go test ./...` replays it from then on: commit it with the fix.
# FUZZTIME also takes a count of executions per target ("200000x"), which CI
# uses after the suite: with a duration, Go 1.26's fuzzing coordinator can
# report a spurious "context deadline exceeded" failure at the deadline
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."
for target in FuzzRequestHead FuzzChunked; do
  go test -run - -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-60s}" ./rollout/router
done
