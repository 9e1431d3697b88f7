//go:build tools

// Package kubebins pins the control-plane binaries the Kubernetes runtime's
// tests run against (kube-apiserver and etcd). It is never imported: the build
// tag keeps it out of every build, and it only tells `go mod tidy` which mains
// to keep. It is its own module so that k8s.io/kubernetes's replace block never
// enters sluice's module graph.
package kubebins

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
