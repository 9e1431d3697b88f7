#!/usr/bin/env bash
# Regenerates go.mod for a Kubernetes release: usage: ./gen.sh 1.36.3 && go mod tidy
# k8s.io/kubernetes requires its staging modules at v0.0.0; each is mapped to its tag.
set -euo pipefail
cd "$(dirname "$0")"
V=$1; SV=0.${V#1.}
MOD=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@v$V")
{
  printf 'module kubebins\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\n// k8s.io/kubernetes requires its staging modules at v0.0.0; map each to its tag.\nreplace (\n' "$V"
  sed -n '/^require (/,/^)/p' "$MOD" | awk -v sv="v$SV" '$2=="v0.0.0"{print "\t"$1" => "$1" "sv}'
  printf ')\n'
} > go.mod
