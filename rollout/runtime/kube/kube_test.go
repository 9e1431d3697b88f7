package kube

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/runtime"
)

func testSpec(ns string, gen int) runtime.Spec {
	return runtime.Spec{
		Service: "hello", Version: "hello-001", Generation: gen, Namespace: ns,
		Image: "registry.example/hello:{{.SHA}}", SHA: "abc123", PR: 7,
		Health: "/healthz", Env: map[string]string{"GREETING": "hi"}, Instances: 2,
		StartTimeout: time.Minute,
	}
}

func newKube() *Kube { return New(k8s, WithPoll(20*time.Millisecond)) }

type started struct {
	g   runtime.Group
	err error
}

func startAsync(k *Kube, spec runtime.Spec) <-chan started {
	ch := make(chan started, 1)
	go func() {
		g, err := k.Start(context.Background(), spec, func() {})
		ch <- started{g, err}
	}()
	return ch
}

// deployment waits for the version's Deployment to carry generation gen.
func deployment(t *testing.T, ns string, gen int) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	eventually(t, fmt.Sprintf("deployment of generation %d", gen), func() (bool, error) {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "hello-001"}, d)
		return err == nil && d.Annotations[AnnotationGeneration] == strconv.Itoa(gen), err
	})
	return d
}

// rollOut plays the Deployment controller: it reports every replica of the
// current generation updated, ready and available.
func rollOut(t *testing.T, ns string, gen int) {
	t.Helper()
	d := deployment(t, ns, gen)
	n := *d.Spec.Replicas
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
		ReadyReplicas: n, AvailableReplicas: n}
	if err := k8s.Status().Update(context.Background(), d); err != nil {
		t.Fatalf("write deployment status: %v", err)
	}
}

// addPod plays the ReplicaSet controller and the kubelet: a pod of
// generation gen with the given status.
func addPod(t *testing.T, ns string, gen int, st corev1.PodStatus) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hello-001-", Namespace: ns,
			Labels:      map[string]string{LabelService: "hello", LabelVersion: "hello-001"},
			Annotations: map[string]string{AnnotationGeneration: strconv.Itoa(gen)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName, Image: "registry.example/hello:abc123"}}},
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	p.Status = st
	if err := k8s.Status().Update(ctx, p); err != nil {
		t.Fatalf("write pod status: %v", err)
	}
	return p
}

// startReady starts spec while playing a rollout that succeeds.
func startReady(t *testing.T, k *Kube, spec runtime.Spec) runtime.Group {
	t.Helper()
	ch := startAsync(k, spec)
	rollOut(t, spec.Namespace, spec.Generation)
	r := result(t, ch)
	if r.err != nil {
		t.Fatalf("Start generation %d: %v", spec.Generation, r.err)
	}
	return r.g
}

func result(t *testing.T, ch <-chan started) started {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("Start did not return")
	}
	return started{}
}

func TestStartAppliesTheVersionAndWaitsForTheRollout(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ch := startAsync(newKube(), testSpec(ns, 1))
	d := deployment(t, ns, 1)
	select {
	case r := <-ch:
		t.Fatalf("Start returned %v before the Deployment reported its replicas available", r.err)
	default:
	}
	rollOut(t, ns, 1)
	r := result(t, ch)
	if r.err != nil {
		t.Fatalf("Start: %v", r.err)
	}
	if got := r.g.Instances(); len(got) != 1 || got[0].Addr != "hello-001."+ns+".svc:80" || !got[0].Up {
		t.Errorf("Instances = %+v; want the version's Service", got)
	}

	ctx := context.Background()
	var managers []string
	for _, mf := range d.ManagedFields {
		if mf.Operation == metav1.ManagedFieldsOperationApply {
			managers = append(managers, mf.Manager)
		}
	}
	if strings.Join(managers, ",") != "sluice" {
		t.Errorf("server-side apply managers = %v; want [sluice]", managers)
	}
	svc := &corev1.Service{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-001"}, svc); err != nil {
		t.Fatalf("get service: %v", err)
	}
	if len(svc.OwnerReferences) != 1 || svc.OwnerReferences[0].UID != d.UID {
		t.Errorf("service owners = %+v; want the Deployment %s", svc.OwnerReferences, d.UID)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("service spec = %+v", svc.Spec)
	}
	sec := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-001-env-1"}, sec); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	if string(sec.Data["GREETING"]) != "hi" || len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != d.UID {
		t.Errorf("secret = %v owners %+v", sec.Data, sec.OwnerReferences)
	}
	if d.Spec.Template.Spec.Containers[0].Image != "registry.example/hello:abc123" || d.Annotations[AnnotationPR] != "7" {
		t.Errorf("deployment image %q annotations %v", d.Spec.Template.Spec.Containers[0].Image, d.Annotations)
	}
}

func TestStartingAgainWritesNothing(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	c, writes := countingClient(t)
	k := New(c, WithPoll(20*time.Millisecond))
	startReady(t, k, testSpec(ns, 1))
	if writes.Load() == 0 {
		t.Fatal("the first Start wrote nothing through the counting client")
	}
	// What a restart of sluice does: start the same generation again.
	writes.Store(0)
	if _, err := k.Start(context.Background(), testSpec(ns, 1), func() {}); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("starting an unchanged version again sent %d writes; want none", n)
	}
}

func TestOtherControllersFieldsAreKept(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	k := newKube()
	startReady(t, k, testSpec(ns, 1))
	// Another tool annotates the Deployment and its pod template.
	d := deployment(t, ns, 1)
	d.Annotations["example.com/team"] = "web"
	d.Spec.Template.Annotations["example.com/scrape"] = "true"
	if err := k8s.Update(context.Background(), d); err != nil {
		t.Fatalf("update as another manager: %v", err)
	}
	spec := testSpec(ns, 2)
	spec.Env = map[string]string{"GREETING": "hello"}
	startReady(t, k, spec)
	d = deployment(t, ns, 2)
	if d.Annotations["example.com/team"] != "web" || d.Spec.Template.Annotations["example.com/scrape"] != "true" {
		t.Errorf("another manager's annotations were lost: %v / %v", d.Annotations, d.Spec.Template.Annotations)
	}
	if got := d.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name; got != "hello-001-env-2" {
		t.Errorf("redeployed template reads secret %q; want hello-001-env-2", got)
	}
}

func running(ready bool) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: ContainerName, Image: "registry.example/hello:abc123", Ready: ready,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}}}
}

func waiting(reason, msg string, last *corev1.ContainerStateTerminated) corev1.PodStatus {
	st := corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Name: ContainerName, Image: "registry.example/hello:abc123", RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
	}}}
	if last != nil {
		st.ContainerStatuses[0].LastTerminationState.Terminated = last
	}
	return st
}

func deploymentCondition(t *testing.T, ns string, c appsv1.DeploymentCondition) {
	t.Helper()
	d := deployment(t, ns, 1)
	d.Status.Conditions = append(d.Status.Conditions, c)
	if err := k8s.Status().Update(context.Background(), d); err != nil {
		t.Fatalf("write deployment condition: %v", err)
	}
}

func probeEvent(t *testing.T, ns string, p *corev1.Pod, msg string) {
	t.Helper()
	e := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: p.Name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name, UID: p.UID},
		Reason:         "Unhealthy", Message: msg, Type: corev1.EventTypeWarning,
	}
	if err := k8s.Create(context.Background(), e); err != nil {
		t.Fatalf("create event: %v", err)
	}
}

// TestStartFailureReasons plays the ReplicaSet controller, the scheduler and
// the kubelet by writing pod and Deployment status, and checks the reason
// Start reports. Cases with a short start timeout are diagnosed at the
// deadline; the others must be diagnosed before it (their timeout is a
// minute, the test's own limit lower).
func TestStartFailureReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		play    func(t *testing.T, ns string)
		code    reason.Code
		detail  string
	}{
		{
			name: "image cannot be pulled", timeout: time.Minute,
			play: func(t *testing.T, ns string) {
				addPod(t, ns, 1, waiting("ImagePullBackOff", `Back-off pulling image "registry.example/hello:abc123"`, nil))
			},
			code: reason.ImagePullFailed, detail: "cannot pull image registry.example/hello:abc123",
		},
		{
			name: "crash loop", timeout: time.Minute,
			play: func(t *testing.T, ns string) {
				addPod(t, ns, 1, waiting("CrashLoopBackOff", "back-off 40s restarting failed container",
					&corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error", Message: "panic: no DATABASE_URL"}))
			},
			code: reason.ProcessExited, detail: "last exit code 2 (Error):\npanic: no DATABASE_URL",
		},
		{
			name: "pods refused by quota", timeout: time.Minute,
			play: func(t *testing.T, ns string) {
				deploymentCondition(t, ns, appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
					Reason: "FailedCreate", Message: `pods "hello-001-x" is forbidden: exceeded quota: compute`})
			},
			code: reason.StartFailed, detail: "exceeded quota: compute",
		},
		{
			name: "progress deadline exceeded", timeout: time.Minute,
			play: func(t *testing.T, ns string) {
				addPod(t, ns, 1, running(false))
				deploymentCondition(t, ns, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
					Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "hello-001-x" has timed out progressing.`})
			},
			code: reason.HealthCheckTimeout, detail: "did not become ready",
		},
		{
			name: "unschedulable", timeout: time.Second,
			play: func(t *testing.T, ns string) {
				st := corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
					Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}}
				addPod(t, ns, 1, st)
			},
			code: reason.Unschedulable, detail: "0/3 nodes are available: 3 Insufficient cpu.",
		},
		{
			name: "health path answers 503", timeout: time.Second,
			play: func(t *testing.T, ns string) {
				p := addPod(t, ns, 1, running(false))
				probeEvent(t, ns, p, "Readiness probe failed: HTTP probe failed with statuscode: 503")
			},
			code: reason.HealthCheckFailed, detail: "statuscode: 503",
		},
		{
			name: "health path never answers", timeout: time.Second,
			play: func(t *testing.T, ns string) {
				p := addPod(t, ns, 1, running(false))
				probeEvent(t, ns, p, `Readiness probe failed: Get "http://10.0.0.7:8080/healthz": dial tcp 10.0.0.7:8080: connect: connection refused`)
			},
			code: reason.HealthCheckTimeout, detail: "connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			spec := testSpec(ns, 1)
			spec.StartTimeout = tt.timeout
			ch := startAsync(newKube(), spec)
			deployment(t, ns, 1)
			tt.play(t, ns)
			r := result(t, ch)
			var f *runtime.Failure
			if !errors.As(r.err, &f) {
				t.Fatalf("Start error = %v; want a *runtime.Failure", r.err)
			}
			if f.Code != tt.code || !strings.Contains(f.Detail, tt.detail) || f.Suggestion == "" {
				t.Errorf("failure = %s / %q / %q; want code %s with detail containing %q and a suggestion", f.Code, f.Detail, f.Suggestion, tt.code, tt.detail)
			}
			if d := deployment(t, ns, 1); *d.Spec.Replicas != 0 {
				t.Errorf("a failed first deploy left %d replicas; want 0 (nothing running)", *d.Spec.Replicas)
			}
		})
	}
}

// TestFailedRedeployRevertsToThePreviousTemplate: a new generation whose pods
// crash-loop is rolled back to the previous pod template, so the
// ReplicaSet of the old pods takes over again.
func TestFailedRedeployRevertsToThePreviousTemplate(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	k := newKube()
	g1 := startReady(t, k, testSpec(ns, 1))
	old := deployment(t, ns, 1).Spec.Template

	spec := testSpec(ns, 2)
	spec.Env = map[string]string{"GREETING": "broken"}
	ch := startAsync(k, spec)
	deployment(t, ns, 2)
	addPod(t, ns, 2, waiting("CrashLoopBackOff", "back-off", &corev1.ContainerStateTerminated{ExitCode: 1, Message: "bad config"}))
	r2 := result(t, ch)
	var f *runtime.Failure
	if !errors.As(r2.err, &f) || f.Code != reason.ProcessExited {
		t.Fatalf("redeploy error = %v; want ProcessExited", r2.err)
	}
	d := deployment(t, ns, 1) // the generation annotation is back to 1
	if got := d.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name; got != "hello-001-env-1" {
		t.Errorf("after the revert the template reads secret %q; want hello-001-env-1", got)
	}
	if d.Spec.Template.Annotations[AnnotationGeneration] != old.Annotations[AnnotationGeneration] || *d.Spec.Replicas != 2 {
		t.Errorf("template annotations %v replicas %d; want generation 1's and 2 replicas", d.Spec.Template.Annotations, *d.Spec.Replicas)
	}
	// The old generation keeps serving: stopping the failed attempt's
	// nothing, and the old group is still the live one.
	if got := g1.Instances(); !got[0].Up {
		t.Errorf("old generation reported down after a failed redeploy")
	}
}

// TestStopScalesToZeroAndStartScalesBackUp: retire and rollback.
func TestStopScalesToZeroAndStartScalesBackUp(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	k := newKube()
	g1 := startReady(t, k, testSpec(ns, 1))
	// An in-place redeploy to generation 2, then the engine stops
	// generation 1's group: the Deployment now belongs to generation 2.
	g2 := startReady(t, k, testSpec(ns, 2))
	if err := g1.Stop(context.Background(), time.Second); err != nil {
		t.Fatalf("stop generation 1: %v", err)
	}
	if d := deployment(t, ns, 2); *d.Spec.Replicas != 2 {
		t.Fatalf("stopping the replaced generation scaled the Deployment to %d", *d.Spec.Replicas)
	}
	// Retire.
	if err := g2.Stop(context.Background(), time.Second); err != nil {
		t.Fatalf("stop generation 2: %v", err)
	}
	if d := deployment(t, ns, 2); *d.Spec.Replicas != 0 || d.Spec.Template.Spec.Containers[0].Image != "registry.example/hello:abc123" {
		t.Fatalf("retired version has %d replicas and template %+v; want 0 and the template kept", *d.Spec.Replicas, d.Spec.Template.Spec)
	}
	// Rollback to it: started again, scaled back up.
	ch := startAsync(k, testSpec(ns, 2))
	eventually(t, "scale up", func() (bool, error) {
		d := deployment(t, ns, 2)
		return *d.Spec.Replicas == 2, nil
	})
	rollOut(t, ns, 2)
	if r := result(t, ch); r.err != nil {
		t.Fatalf("start again: %v", r.err)
	}
}
