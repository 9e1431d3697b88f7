package kube

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of a Workload's optional fields.
const (
	// DefaultPort is the container port when the Workload names none; the
	// container gets it as $PORT.
	DefaultPort = 8080
	// ContainerName is the name of the one container of a version's pods.
	ContainerName = "app"
	// portName names the container port the Service and probes target.
	portName = "http"
	// revisionHistory keeps the previous ReplicaSets so a failed in-place
	// redeploy can be rolled back to the template they hold.
	revisionHistory = 3
)

var deploymentType = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}

// Workload is one generation of one version, as the kube runtime runs it.
type Workload struct {
	Service    string
	Version    string
	Namespace  string
	Generation int
	// Image is a text/template executed with {{.SHA}}, {{.Version}} and
	// {{.Service}}, e.g. "ghcr.io/acme/hello:{{.SHA}}".
	Image string
	// SHA is the commit the version was built from; PR the pull request
	// (0: none). Both are recorded as annotations.
	SHA string
	PR  int
	// Port the container listens on, passed as $PORT; 0 means DefaultPort.
	Port int
	// Replicas is the number of pods, at least 1.
	Replicas int
	// Resources are Kubernetes quantities ("250m", "128Mi"); empty fields
	// are left unset.
	Resources Resources
	// Health is the HTTP path of the readiness probe; never empty.
	Health string
	// Env is the containers' extra environment. It is stored in the
	// generation's Secret and never written into the Deployment.
	Env map[string]string
	// StartTimeout bounds a rollout: it becomes the Deployment's
	// progressDeadlineSeconds (at least one second).
	StartTimeout time.Duration
}

// Resources are a container's requests and limits.
type Resources struct {
	CPURequest, MemoryRequest string
	CPULimit, MemoryLimit     string
}

// Objects are the Kubernetes objects of one generation of a version.
type Objects struct {
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	// Secret holds the environment; nil when Env is empty.
	Secret *corev1.Secret
}

// SecretName is the name of the Secret holding generation gen's environment
// of version. Each generation has its own, so pods of the previous
// generation keep reading theirs while a redeploy rolls out or is reverted.
func SecretName(version string, gen int) string {
	return fmt.Sprintf("%s-env-%d", version, gen)
}

// Build returns the objects of w. The Service and the Secret are owned by the
// Deployment when owner is not empty (its UID, known once the Deployment
// exists), so deleting the Deployment deletes them.
//
// Bad input (an image template that does not execute or gives no image, a
// name that is not a DNS label, a resource quantity that does not parse, a
// port outside 1..65535) is an error naming the field. Build is pure.
func Build(w Workload, owner types.UID) (Objects, error) {
	if err := checkNames(w); err != nil {
		return Objects{}, err
	}
	image, err := renderImage(w)
	if err != nil {
		return Objects{}, err
	}
	port := w.Port
	if port == 0 {
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return Objects{}, fmt.Errorf("port %d is outside 1..65535", port)
	}
	res, err := w.Resources.requirements()
	if err != nil {
		return Objects{}, err
	}
	replicas := int32(max(w.Replicas, 1))
	deadline := int32(max(w.StartTimeout.Round(time.Second)/time.Second, 1))
	lbl := labels(w.Service, w.Version)
	selector := map[string]string{LabelService: w.Service, LabelVersion: w.Version}
	gen := strconv.Itoa(w.Generation)
	ann := map[string]string{AnnotationGeneration: gen}
	if w.SHA != "" {
		ann[AnnotationSHA] = w.SHA
	}
	if w.PR > 0 {
		ann[AnnotationPR] = strconv.Itoa(w.PR)
	}
	container := corev1.Container{
		Name:  ContainerName,
		Image: image,
		Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}},
		Env:   []corev1.EnvVar{{Name: "PORT", Value: strconv.Itoa(port)}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: w.Health, Port: intstr.FromString(portName),
			}},
			// The API server's defaults, written out so that a live
			// object compares equal to a desired one.
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			PeriodSeconds:    2,
			FailureThreshold: 3,
		},
		Resources:                res,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	var secret *corev1.Secret
	if len(w.Env) > 0 {
		secret = &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: objectMeta(SecretName(w.Version, w.Generation), w.Namespace, lbl, ann, w.Version, owner),
			Type:       corev1.SecretTypeOpaque,
			StringData: maps.Clone(w.Env),
		}
		container.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name},
		}}}
	}
	maxUnavailable, maxSurge := intstr.FromInt32(0), intstr.FromString("100%")
	dep := &appsv1.Deployment{
		TypeMeta:   deploymentType,
		ObjectMeta: objectMeta(w.Version, w.Namespace, lbl, ann, "", ""),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			// New pods start beside the old ones; the old ones leave only
			// once the new ones are ready (SPEC 3.6).
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge}},
			ProgressDeadlineSeconds: &deadline,
			RevisionHistoryLimit:    ptrTo(int32(revisionHistory)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: maps.Clone(ann)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{container}},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(w.Version, w.Namespace, lbl, ann, w.Version, owner),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector,
			Ports: []corev1.ServicePort{{Name: portName, Port: ServicePort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromString(portName)}},
		},
	}
	return Objects{Deployment: dep, Service: svc, Secret: secret}, nil
}

func objectMeta(name, ns string, lbl, ann map[string]string, ownerName string, owner types.UID) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: maps.Clone(lbl), Annotations: maps.Clone(ann)}
	if owner != "" {
		m.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "Deployment", Name: ownerName, UID: owner,
			BlockOwnerDeletion: ptrTo(true),
		}}
	}
	return m
}

func ptrTo[T any](v T) *T { return &v }

func checkNames(w Workload) error {
	for _, f := range []struct{ field, value string }{
		{"service", w.Service}, {"version", w.Version}, {"namespace", w.Namespace},
	} {
		if errs := validation.IsDNS1123Label(f.value); len(errs) > 0 {
			return fmt.Errorf("%s %q is not a Kubernetes name: %s", f.field, f.value, strings.Join(errs, "; "))
		}
	}
	if w.Health == "" || w.Health[0] != '/' {
		return fmt.Errorf("health path %q must start with /", w.Health)
	}
	for _, k := range slices.Sorted(maps.Keys(w.Env)) {
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			return fmt.Errorf("environment variable %q: %s", k, strings.Join(errs, "; "))
		}
	}
	return nil
}

// imageData is what an image template sees.
type imageData struct {
	SHA, Version, Service string
}

func renderImage(w Workload) (string, error) {
	tmpl, err := template.New("image").Option("missingkey=error").Parse(w.Image)
	if err != nil {
		return "", fmt.Errorf("parse image template %q: %w", w.Image, err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, imageData{SHA: w.SHA, Version: w.Version, Service: w.Service}); err != nil {
		return "", fmt.Errorf("execute image template %q: %w", w.Image, err)
	}
	image := b.String()
	if image == "" || strings.ContainsAny(image, " \t\r\n") || strings.HasSuffix(image, ":") {
		return "", fmt.Errorf("image template %q gives %q, which is not an image reference (is the commit SHA missing?)", w.Image, image)
	}
	return image, nil
}

func (r Resources) requirements() (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	for _, q := range []struct {
		field string
		value string
		into  *corev1.ResourceList
		name  corev1.ResourceName
	}{
		{"cpu request", r.CPURequest, &out.Requests, corev1.ResourceCPU},
		{"memory request", r.MemoryRequest, &out.Requests, corev1.ResourceMemory},
		{"cpu limit", r.CPULimit, &out.Limits, corev1.ResourceCPU},
		{"memory limit", r.MemoryLimit, &out.Limits, corev1.ResourceMemory},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			return out, fmt.Errorf("%s %q is not a Kubernetes quantity (like 250m or 128Mi): %w", q.field, q.value, err)
		}
		if *q.into == nil {
			*q.into = corev1.ResourceList{}
		}
		(*q.into)[q.name] = v
	}
	return out, nil
}
