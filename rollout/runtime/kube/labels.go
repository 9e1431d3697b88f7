package kube

// Labels and annotations sluice puts on the objects it owns.
const (
	// LabelService names the sluice service an object belongs to.
	LabelService = "sluice.dev/service"
	// LabelVersion names the version an object belongs to; absent on a
	// service's HTTPRoute.
	LabelVersion = "sluice.dev/version"
	// LabelManagedBy marks every object sluice writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is LabelManagedBy's value.
	ManagedBy = "sluice"

	// AnnotationSHA is the commit the version was built from.
	AnnotationSHA = "sluice.dev/source-sha"
	// AnnotationPR is the pull request the version came from, when any.
	AnnotationPR = "sluice.dev/pr"
	// AnnotationGeneration is the version's configuration generation (1 for
	// the first deploy, +1 per in-place redeploy); on the pod template it
	// makes each generation a new ReplicaSet.
	AnnotationGeneration = "sluice.dev/generation"
)

// labels returns the labels of an object of service (and of version, when
// not empty).
func labels(service, version string) map[string]string {
	l := map[string]string{LabelService: service, LabelManagedBy: ManagedBy}
	if version != "" {
		l[LabelVersion] = version
	}
	return l
}
