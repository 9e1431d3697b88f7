package kube

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func testWorkload() Workload {
	return Workload{
		Service: "hello", Version: "hello-004", Namespace: "web", Generation: 2,
		Image: "ghcr.io/acme/{{.Service}}:{{.SHA}}-{{.Version}}", SHA: "0123abcd", PR: 12,
		Port: 3000, Replicas: 3, Health: "/healthz",
		Resources:    Resources{CPURequest: "250m", MemoryRequest: "128Mi", MemoryLimit: "256Mi"},
		Env:          map[string]string{"GREETING": "hi", "TOKEN": "s3cret"},
		StartTimeout: 90 * time.Second,
	}
}

func TestBuildObjects(t *testing.T) {
	objs, err := Build(testWorkload(), "uid-1")
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	lbl := map[string]string{"sluice.dev/service": "hello", "sluice.dev/version": "hello-004", "app.kubernetes.io/managed-by": "sluice"}
	sel := map[string]string{"sluice.dev/service": "hello", "sluice.dev/version": "hello-004"}
	ann := map[string]string{"sluice.dev/source-sha": "0123abcd", "sluice.dev/pr": "12", "sluice.dev/generation": "2"}
	owned := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "hello-004", UID: "uid-1", BlockOwnerDeletion: ptrTo(true)}}
	zero, surge := intstr.FromInt32(0), intstr.FromString("100%")

	wantDep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "hello-004", Namespace: "web", Labels: lbl, Annotations: ann},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &surge}},
			ProgressDeadlineSeconds: ptrTo(int32(90)),
			RevisionHistoryLimit:    ptrTo(int32(3)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "ghcr.io/acme/hello:0123abcd-hello-004",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 3000, Protocol: corev1.ProtocolTCP}},
					Env:   []corev1.EnvVar{{Name: "PORT", Value: "3000"}},
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "hello-004-env-2"},
					}}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
						TimeoutSeconds:   1,
						SuccessThreshold: 1,
						PeriodSeconds:    2,
						FailureThreshold: 3,
					},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
					},
					TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				}}},
			},
		},
	}
	if !equality.Semantic.DeepEqual(objs.Deployment, wantDep) {
		t.Errorf("Deployment differs:\n got %s\nwant %s", dump(objs.Deployment), dump(wantDep))
	}

	wantSvc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "hello-004", Namespace: "web", Labels: lbl, Annotations: ann, OwnerReferences: owned},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: sel,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
	if !equality.Semantic.DeepEqual(objs.Service, wantSvc) {
		t.Errorf("Service differs:\n got %s\nwant %s", dump(objs.Service), dump(wantSvc))
	}

	wantSecret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "hello-004-env-2", Namespace: "web", Labels: lbl, Annotations: ann, OwnerReferences: owned},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"GREETING": "hi", "TOKEN": "s3cret"},
	}
	if !equality.Semantic.DeepEqual(objs.Secret, wantSecret) {
		t.Errorf("Secret differs:\n got %s\nwant %s", dump(objs.Secret), dump(wantSecret))
	}
	if d := dump(objs.Deployment); strings.Contains(d, "s3cret") {
		t.Errorf("the Deployment carries an environment value inline:\n%s", d)
	}
}

func TestBuildDefaults(t *testing.T) {
	w := testWorkload()
	w.Env, w.Port, w.Replicas, w.PR, w.Resources, w.StartTimeout = nil, 0, 0, 0, Resources{}, 0
	objs, err := Build(w, "")
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c := objs.Deployment.Spec.Template.Spec.Containers[0]
	for _, check := range []struct {
		field     string
		got, want any
	}{
		{"secret", objs.Secret == nil, true},
		{"envFrom", len(c.EnvFrom), 0},
		{"port", c.Ports[0].ContainerPort, int32(DefaultPort)},
		{"PORT", c.Env[0].Value, "8080"},
		{"replicas", *objs.Deployment.Spec.Replicas, int32(1)},
		{"progress deadline", *objs.Deployment.Spec.ProgressDeadlineSeconds, int32(1)},
		{"pr annotation", objs.Deployment.Annotations[AnnotationPR], ""},
		{"resources", len(c.Resources.Requests) + len(c.Resources.Limits), 0},
		{"service owner", len(objs.Service.OwnerReferences), 0},
	} {
		if check.got != check.want {
			t.Errorf("%s = %v; want %v", check.field, check.got, check.want)
		}
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Workload)
		wantErr string
	}{
		{"template syntax", func(w *Workload) { w.Image = "x:{{.SHA" }, "parse image template"},
		{"unknown field", func(w *Workload) { w.Image = "x:{{.Branch}}" }, "execute image template"},
		{"no sha", func(w *Workload) { w.Image = "x:{{.SHA}}"; w.SHA = "" }, "not an image reference"},
		{"namespace", func(w *Workload) { w.Namespace = "Web" }, `namespace "Web" is not a Kubernetes name`},
		{"quantity", func(w *Workload) { w.Resources.CPURequest = "lots" }, `cpu request "lots" is not a Kubernetes quantity`},
		{"port", func(w *Workload) { w.Port = 70000 }, "port 70000 is outside 1..65535"},
		{"health", func(w *Workload) { w.Health = "healthz" }, `health path "healthz" must start with /`},
		{"env name", func(w *Workload) { w.Env = map[string]string{"A=B": "x"} }, `environment variable "A=B"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := testWorkload()
			tt.edit(&w)
			_, err := Build(w, "")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Build error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
