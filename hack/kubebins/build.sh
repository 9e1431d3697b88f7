#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy once per machine and
# prints the directory holding them; use it as KUBEBUILDER_ASSETS.
#
# The cache lives outside the clone (KUBEBINS_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/kubebins), keyed by this module's go.mod,
# go.sum, tools.go, this script and the Go version, so a fresh clone on the
# same machine reuses it and any change to the pins rebuilds. A cold build takes
# about ten minutes on two cores; a cache hit is instant. The build runs at the
# lowest CPU priority and writes to a temporary directory that is renamed into
# place, so an interrupted build never leaves a half-written entry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
kver=$(awk '$1=="k8s.io/kubernetes"{print $2}' go.mod)
minor=$(echo "$kver" | cut -d. -f2)
key=$(cat go.mod go.sum tools.go build.sh | sha256sum | cut -c1-16)-$(go env GOVERSION)
root=${KUBEBINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubebins}
out=$root/$kver-$key
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then echo "$out"; exit 0; fi
mkdir -p "$root"
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ldf="-s -w -X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
nice -n 19 go build -mod=readonly -ldflags "$ldf" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
nice -n 19 go build -mod=readonly -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
echo "kubebins: built $kver in $(( $(date +%s) - start ))s" >&2
chmod 755 "$tmp"
rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
echo "$out"
