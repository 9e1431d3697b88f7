package kube

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the server-side-apply field manager of every write.
const FieldManager = "sluice"

// apply makes the live object agree with desired on every field desired
// sets, with server-side apply (field manager FieldManager), leaving the
// fields other managers own alone. It first compares desired with the live
// object and writes nothing when desired's labels, annotations, owner
// references and same() already hold, so an unchanged object keeps its
// resourceVersion and generation. live must be an empty object of desired's
// type; on return it holds the object as stored (or nothing, if absent and
// the write failed). apply reports whether it wrote.
func apply(ctx context.Context, c client.Client, desired, live client.Object, same func() bool) (bool, error) {
	kind := desired.GetObjectKind().GroupVersionKind().Kind
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), live)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, fmt.Errorf("get %s %s: %w", kind, desired.GetName(), err)
	case subset(desired.GetLabels(), live.GetLabels()) && subset(desired.GetAnnotations(), live.GetAnnotations()) &&
		equality.Semantic.DeepDerivative(desired.GetOwnerReferences(), live.GetOwnerReferences()) && same():
		return false, nil
	}
	u, err := kruntime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return false, fmt.Errorf("convert %s %s: %w", kind, desired.GetName(), err)
	}
	// A typed object marshals its zero status and creation time; an apply
	// configuration must only hold the fields sluice means to own.
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u, "spec", "template", "metadata", "creationTimestamp")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := c.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply %s %s: %w", kind, desired.GetName(), err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(desired), live); err != nil {
		return true, fmt.Errorf("get %s %s: %w", kind, desired.GetName(), err)
	}
	return true, nil
}

// subset reports whether every key of want has the same value in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}
