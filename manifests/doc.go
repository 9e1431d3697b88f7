// Package manifests holds no Go code: it is the kustomize base that runs
// sluice on Kubernetes (kustomization.yaml, deployment.yaml, pvc.yaml,
// service.yaml), and two kustomize components for the kubernetes runtime:
// kubernetes/ (a ServiceAccount, a namespaced Role and the serve settings)
// and kubernetes-cluster/ (the same rules as a ClusterRole). Its tests
// strictly decode every manifest into the Kubernetes API types and check the
// invariants sluice depends on, and check the repository's Dockerfile. Nothing imports it; it imports no
// sluice package.
package manifests
