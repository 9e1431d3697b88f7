package kube

import (
	"context"
	"github.com/sluicehq/sluice/rollout/reason"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestTheShippedRoleIsEnough runs the runtime as a user holding only the
// Role of manifests/kubernetes (the apiserver runs RBAC): deploy, explain a
// failure, read logs, move traffic, retire.
func TestTheShippedRoleIsEnough(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	b, err := os.ReadFile("../../../manifests/kubernetes/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{}
	if err := yaml.UnmarshalStrict([]byte(strings.Split(string(b), "\n---\n")[0]), role); err != nil {
		t.Fatalf("decode role: %v", err)
	}
	ctx := context.Background()
	role.Namespace = ns
	user := "sluice-" + ns
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sluice", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	cfg := rest.CopyConfig(testREST)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// Outside its namespace the account can do nothing.
	if err := c.List(ctx, &corev1.PodList{}, client.InNamespace("default")); err == nil {
		t.Fatal("the role's user may list pods in another namespace; the test does not test RBAC")
	}

	tr := newTraffic(c, ns)
	k := New(c, WithPoll(20*time.Millisecond), WithVersionRoutes(tr))
	g := startReady(t, k, testSpec(ns, 1))
	spec := testSpec(ns, 2)
	ch := startAsync(k, spec)
	deployment(t, ns, 2)
	addPod(t, ns, 2, waiting("CrashLoopBackOff", "back-off", &corev1.ContainerStateTerminated{ExitCode: 3, Message: "no config"}))
	if r := result(t, ch); r.err == nil || !strings.Contains(r.err.Error(), string(reason.ProcessExited)) {
		t.Fatalf("failing redeploy as the role's user: %v", r.err)
	}
	if logs, err := k.Logs(context.Background(), "hello-001", 4096); err != nil || !strings.Contains(logs, "no config") {
		t.Errorf("Logs as the role's user: %q %v", logs, err)
	}
	done := applyAsync(tr, canary)
	judge(t, ns, 1, metav1.ConditionTrue, "Accepted", "")
	if err := wait(t, done); err != nil {
		t.Fatalf("ApplyPolicy as the role's user: %v", err)
	}
	if err := tr.ApplyVersionRoute(ctx, "hello", "hello-001"); err != nil {
		t.Fatalf("version route as the role's user: %v", err)
	}
	if err := g.Stop(ctx, 0); err != nil {
		t.Fatalf("retire as the role's user: %v", err)
	}
}
