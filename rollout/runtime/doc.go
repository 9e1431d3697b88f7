// Package runtime declares the driver interface through which package rollout
// builds and runs versions, and the failure codes drivers report.
// Implementations live in subpackages (local: child processes). This package
// must not import rollout, the router, the store, or any front door.
package runtime
