// Package routing is the contract between the engine and a data path: the
// routing table the engine publishes (Table, Service, Version) and the
// per-version counters the data path reports back (Stats).
//
// It is a leaf beside package policy: it imports the standard library and
// policy only, so the engine (package rollout) can publish tables and read
// counters without importing the router, its HTTP server or Prometheus.
// The router (package router) serves Tables and fills Stats; cmd wires the
// two together.
package routing
