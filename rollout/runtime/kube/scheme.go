package kube

import (
	"fmt"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// NewScheme returns a scheme with every type the runtime reads and writes:
// the built-in API groups and Gateway API v1.
func NewScheme() (*kruntime.Scheme, error) {
	s := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("add built-in types: %w", err)
	}
	if err := gwv1.Install(s); err != nil {
		return nil, fmt.Errorf("add gateway api types: %w", err)
	}
	return s, nil
}
