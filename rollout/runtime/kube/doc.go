// Package kube runs versions on Kubernetes and moves their traffic with a
// Gateway API HTTPRoute.
//
// It owns the translation of sluice's model into Kubernetes objects:
//
//   - a version becomes a Deployment and a ClusterIP Service, both named after
//     the version, and, when it has environment variables, one Secret per
//     generation holding them (never inline in the Deployment);
//   - a service's traffic policy becomes one HTTPRoute named after the
//     service: one HTTPRoute rule per policy rule, in order, then the split as
//     weighted backendRefs;
//   - a version's own URL becomes an HTTPRoute named after the version, whose
//     only hostname is the version host and whose only backend is the version.
//
// Every object carries the labels LabelService and LabelVersion (when it
// belongs to one version) and LabelManagedBy=sluice.
//
// It also reads, for the automatic canary, what each version served from
// the gateway's metrics in Prometheus (Prometheus, Queries: one set of
// PromQL templates per gateway kind).
//
// This package may import only the standard library, the Kubernetes and
// Gateway API client libraries, Prometheus's API client, a YAML decoder (for
// query files), rollout/runtime and rollout/policy (for the policy type it
// translates); it must not import rollout, the store or any front door.
package kube
