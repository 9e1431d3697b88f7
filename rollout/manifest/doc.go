// Package manifest parses sluice.yaml, the file in which a repository declares
// its services: how each is built, run and health-checked, its environment,
// instance count, timeouts, what a merge does, its canary plan and its
// Kubernetes placement.
//
// Parse is pure: bytes in, a *Manifest or an *Error listing every problem out.
// Each problem carries the file, line and column of the offending key or value
// so front doors can annotate that line (Check Run annotations, CLI output).
//
// This package owns the file format only. It must not import other sluice
// packages; it imports the standard library and go.yaml.in/yaml/v3.
package manifest
