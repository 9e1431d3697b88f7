// Package runtime declares the driver interface through which package rollout
// builds and runs versions, and the error (Failure) drivers return when a
// version cannot run; its codes are package reason's, shared with the engine
// and the front doors. Implementations live in subpackages (local: child
// processes; kube: Kubernetes). This package must not import rollout, the
// router, the store, or any front door.
package runtime
