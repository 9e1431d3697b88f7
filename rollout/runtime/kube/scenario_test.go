package kube

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// controllers plays, for one namespace, what a cluster would run: the
// Deployment controller with its ReplicaSets and the kubelet (a Deployment
// rolls out, or its pods fail the way the test asked), and the gateway
// controller (a route is accepted, or refused while noRegex is set and the
// route uses a RegularExpression match). It runs until the test ends.
type controllers struct {
	t  *testing.T
	ns string

	mu      sync.Mutex
	fail    map[string]corev1.PodStatus // "<version>/<generation>" → the pod status to show instead of rolling out
	noRegex bool
	played  map[string]bool
	held    map[string]bool // versions whose rollout never progresses
}

func startControllers(t *testing.T, ns string) *controllers {
	c := &controllers{t: t, ns: ns, fail: map[string]corev1.PodStatus{}, played: map[string]bool{}, held: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			c.step(ctx)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return c
}

func (c *controllers) failGeneration(version string, gen int, st corev1.PodStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[version+"/"+strconv.Itoa(gen)] = st
}

// recover plays the ReplicaSet controller after a revert: the failed
// generation's pods go away and the generation may roll out next time.
func (c *controllers) recover(version string, gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := version + "/" + strconv.Itoa(gen)
	delete(c.fail, key)
	delete(c.played, key)
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(c.ns), client.MatchingLabels{LabelVersion: version}); err != nil {
		c.t.Errorf("list pods: %v", err)
		return
	}
	for i := range pods.Items {
		if pods.Items[i].Annotations[AnnotationGeneration] == strconv.Itoa(gen) {
			_ = k8s.Delete(context.Background(), &pods.Items[i], client.GracePeriodSeconds(0))
		}
	}
}

// hold keeps version's rollout from progressing until release: its
// Deployment is left as the API server wrote it.
func (c *controllers) hold(version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[version] = true
}

func (c *controllers) release(version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, version)
}

func (c *controllers) setNoRegex(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noRegex = v
}

func (c *controllers) step(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var deps appsv1.DeploymentList
	if err := k8s.List(ctx, &deps, client.InNamespace(c.ns)); err != nil {
		return
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if c.held[d.Name] {
			continue
		}
		gen := d.Spec.Template.Annotations[AnnotationGeneration]
		key := d.Name + "/" + gen
		if st, bad := c.fail[key]; bad {
			if !c.played[key] {
				c.played[key] = true
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-", Namespace: c.ns, Labels: d.Spec.Template.Labels,
						Annotations: map[string]string{AnnotationGeneration: gen}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName, Image: d.Spec.Template.Spec.Containers[0].Image}}},
				}
				if err := k8s.Create(ctx, p); err == nil {
					p.Status = st
					_ = k8s.Status().Update(ctx, p)
				}
			}
			continue
		}
		n := int32(1)
		if d.Spec.Replicas != nil {
			n = *d.Spec.Replicas
		}
		want := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		if !equality.Semantic.DeepEqual(d.Status, want) {
			d.Status = want
			_ = k8s.Status().Update(ctx, d)
		}
	}
	var routes gwv1.HTTPRouteList
	if err := k8s.List(ctx, &routes, client.InNamespace(c.ns)); err != nil {
		return
	}
	for i := range routes.Items {
		rt := &routes.Items[i]
		if len(rt.Status.Parents) > 0 && rt.Status.Parents[0].Conditions[0].ObservedGeneration == rt.Generation {
			continue
		}
		accepted, reason, msg := metav1.ConditionTrue, "Accepted", "Route is accepted"
		if c.noRegex && strings.Contains(dump(rt.Spec), "RegularExpression") {
			accepted, reason, msg = metav1.ConditionFalse, "UnsupportedValue", "RegularExpression query parameter matches are not supported by this gateway"
		}
		gwNS := gwv1.Namespace(testGateway.Namespace)
		rt.Status.Parents = []gwv1.RouteParentStatus{{
			ParentRef: gwv1.ParentReference{Namespace: &gwNS, Name: gwv1.ObjectName(testGateway.Name)}, ControllerName: "example.com/gateway-controller",
			Conditions: []metav1.Condition{
				{Type: "Accepted", Status: accepted, Reason: reason, Message: msg, ObservedGeneration: rt.Generation, LastTransitionTime: metav1.Now()},
				{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs", ObservedGeneration: rt.Generation, LastTransitionTime: metav1.Now()},
			},
		}}
		_ = k8s.Status().Update(ctx, rt)
	}
}

// serviceRouteIs checks the live HTTPRoute of service field by field
// against the translation of p.
func serviceRouteIs(t *testing.T, step, service string, p policy.Policy, at Placement) {
	t.Helper()
	desired, err := ServiceRoute(service, p, at)
	if err != nil {
		t.Fatal(err)
	}
	live := &gwv1.HTTPRoute{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: at.Namespace, Name: service}, live); err != nil {
		t.Fatalf("%s: get route: %v", step, err)
	}
	if !equality.Semantic.DeepDerivative(desired.Spec, live.Spec) || len(live.Spec.Rules) != len(desired.Spec.Rules) {
		t.Fatalf("%s: route\n%s\nwant\n%s", step, dump(live.Spec), dump(desired.Spec))
	}
}

// archive is a source tree holding only sluice.yaml for service hello,
// placed in namespace ns.
func archive(t *testing.T, image, ns string) []byte {
	t.Helper()
	b, err := manifestArchive(image, ns)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func manifestArchive(image, ns string) ([]byte, error) { return manifestArchiveWith(image, ns, "") }

// manifestArchiveWith is manifestArchive with more lines for the service.
func manifestArchiveWith(image, ns, more string) ([]byte, error) {
	manifest := fmt.Sprintf("services:\n  hello:\n    run: ./app\n    health: /healthz\n    env: {GREETING: hi}\n    instances: 2\n    timeouts: {start: 1m}\n    kubernetes: {image: %q, namespace: %q}\n", image, ns) + more
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{{"sluice.yaml", manifest}, {"main.go", "package main\n"}} {
		if err := tw.WriteHeader(&tar.Header{Name: "src/" + f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TestScenario runs the engine on this runtime through the scenario
// (deploy full, canary at 0%, 90/10, a rule, predict, promote, rollback, a
// failing and a succeeding in-place redeploy, an image that cannot be
// pulled, a crash-looping version, a route the gateway rejects) and checks
// the HTTPRoute after each step; then sluice is killed with SIGKILL in the
// middle of a deploy and started again on the same data directory. Pods and
// gateway are played by controllers.
func TestScenario(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ctl := startControllers(t, ns)
	// Versions name their namespace in sluice.yaml; the runtime's default
	// namespace is another one, which must stay empty.
	defaultNS := namespace(t)
	dbPath := filepath.Join(t.TempDir(), "sluice.db")
	quiet := slog.New(slog.DiscardHandler)
	srv, err := startServer(k8s, dbPath, defaultNS, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.stop() }()
	ctx := context.Background()
	origin := func(sha string) rollout.Origin {
		return rollout.Origin{Via: "test", Ref: sha, PR: 12, Principal: rollout.Principal{Admin: true}}
	}
	at := Placement{Namespace: ns, Gateway: testGateway, BaseDomain: "apps.example.com"}

	deploy := func(image, sha string, strategy rollout.Strategy) rollout.Version {
		t.Helper()
		v, err := srv.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: archive(t, image, ns), Strategy: strategy, Origin: origin(sha)})
		if err != nil {
			t.Fatalf("deploy: %v", err)
		}
		srv.eng.Wait()
		return v
	}
	version := func(name string) rollout.VersionStatus {
		t.Helper()
		st, err := srv.eng.Status(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range st.Versions {
			if v.Name == name {
				return v
			}
		}
		t.Fatalf("no version %s", name)
		return rollout.VersionStatus{}
	}
	// routeIs checks the stored HTTPRoute field by field against the
	// translation of the policy sluice has committed, and that policy
	// against want.
	routeIs := func(step string, want policy.Policy) {
		t.Helper()
		st, err := srv.eng.Status(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(st.Policy.Split, want.Split) || len(st.Policy.Rules) != len(want.Rules) {
			t.Fatalf("%s: committed policy %+v; want %+v", step, st.Policy, want)
		}
		serviceRouteIs(t, step, "hello", want, at)
	}

	v1 := deploy("registry.example/hello:{{.SHA}}", "aaa111", rollout.StrategyFull)
	if got := version(v1.Name); got.Status != rollout.StatusNormal {
		t.Fatalf("full deploy: %s %+v", got.Status, got.Reason)
	}
	routeIs("deploy full", policy.Policy{Split: map[string]int{v1.Name: 100}})
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1.Name}, d); err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/hello:aaa111" || d.Annotations[AnnotationPR] != "12" {
		t.Errorf("deployment image %q annotations %v", img, d.Annotations)
	}
	vr := &gwv1.HTTPRoute{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1.Name}, vr); err != nil || string(vr.Spec.Hostnames[0]) != v1.Name+".hello.apps.example.com" {
		t.Errorf("version route: %v %v", err, vr.Spec.Hostnames)
	}

	v2 := deploy("registry.example/hello:{{.SHA}}", "bbb222", rollout.StrategyCanary)
	routeIs("canary at 0%", policy.Policy{Split: map[string]int{v1.Name: 100}})

	split := map[string]int{v1.Name: 90, v2.Name: 10}
	if _, err := srv.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: split}, origin("")); err != nil {
		t.Fatalf("traffic: %v", err)
	}
	routeIs("split 90/10", policy.Policy{Split: split})

	beta := policy.Rule{Version: v2.Name, Match: map[string]string{"env": "beta*"}}
	if _, err := srv.eng.Route(ctx, "hello", beta, origin("")); err != nil {
		t.Fatalf("route: %v", err)
	}
	routeIs("route env=beta*", policy.Policy{Rules: []policy.Rule{beta}, Split: split})
	if p, err := srv.eng.Predict(ctx, "hello", "env=beta-2"); err != nil || p.Version != v2.Name || p.Rule != 1 {
		t.Errorf("predict env=beta-2: %+v %v", p, err)
	}

	// A gateway without regular expressions refuses the next rule: the
	// change fails with its message, the route and the policy stay.
	ctl.setNoRegex(true)
	_, err = srv.eng.Route(ctx, "hello", policy.Rule{Version: v2.Name, Match: map[string]string{"env": "gamma*"}}, origin(""))
	if e, ok := rollout.AsError(err); !ok || e.Code != rollout.ErrCodeDataPlane || !strings.Contains(e.Message, "not supported by this gateway") {
		t.Fatalf("route rejected by the gateway: %v", err)
	}
	routeIs("after the rejection", policy.Policy{Rules: []policy.Rule{beta}, Split: split})
	ctl.setNoRegex(false)

	if _, err := srv.eng.Promote(ctx, "hello", v2.Name, false, origin("")); err != nil {
		t.Fatalf("promote: %v", err)
	}
	// Rules to the promoted version stay.
	routeIs("promote", policy.Policy{Rules: []policy.Rule{beta}, Split: map[string]int{v2.Name: 100}})
	if _, err := srv.eng.Rollback(ctx, "hello", "", origin("")); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	routeIs("rollback", policy.Policy{Split: map[string]int{v1.Name: 100}})

	// In-place redeploys of v1: one whose pods crash, then one that works.
	ctl.failGeneration(v1.Name, 2, waiting("CrashLoopBackOff", "back-off", &corev1.ContainerStateTerminated{ExitCode: 1, Message: "bad GREETING"}))
	if _, err := srv.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Env: map[string]string{"GREETING": "broken"}, Origin: origin("")}); err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	srv.eng.Wait()
	if got := version(v1.Name); got.Status != rollout.StatusDeployFailed || got.Reason.Code != "ProcessExited" || !strings.Contains(got.Reason.Detail, "bad GREETING") {
		t.Fatalf("failing redeploy: %s %+v", got.Status, got.Reason)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1.Name}, d); err != nil || d.Spec.Template.Annotations[AnnotationGeneration] != "1" {
		t.Fatalf("after the failed redeploy the template is generation %q (%v); want 1", d.Spec.Template.Annotations[AnnotationGeneration], err)
	}
	ctl.recover(v1.Name, 2)
	if _, err := srv.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Env: map[string]string{"GREETING": "hello"}, Origin: origin("")}); err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	srv.eng.Wait()
	if got := version(v1.Name); got.Status != rollout.StatusNormal || got.Generation != 2 {
		t.Fatalf("succeeding redeploy: %s gen %d %+v", got.Status, got.Generation, got.Reason)
	}
	routeIs("after the redeploys", policy.Policy{Split: map[string]int{v1.Name: 100}})

	// Retiring v2 (0%, no rule) removes the route of its own URL; a
	// rollback to it starts it and writes that route again.
	versionRouteIs := func(step, version string, want bool) {
		t.Helper()
		live := &gwv1.HTTPRoute{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: version}, live)
		if !want {
			if !apierrors.IsNotFound(err) {
				t.Fatalf("%s: the route of %s's own URL is still there (%v); want it deleted", step, version, err)
			}
			return
		}
		desired := VersionRoute("hello", version, at)
		if err != nil || !equality.Semantic.DeepDerivative(desired.Spec, live.Spec) || len(live.Spec.Rules) != 1 ||
			len(live.Spec.Hostnames) != 1 || live.Labels[LabelVersion] != version {
			t.Fatalf("%s: route of %s (%v)\n%s\nwant\n%s", step, version, err, dump(live.Spec), dump(desired.Spec))
		}
	}
	versionRouteIs("before retiring", v2.Name, true)
	if err := srv.eng.StopVersion(ctx, "hello", v2.Name, origin("")); err != nil {
		t.Fatalf("retire %s: %v", v2.Name, err)
	}
	versionRouteIs("retired", v2.Name, false)
	routeIs("after retiring", policy.Policy{Split: map[string]int{v1.Name: 100}})
	if _, err := srv.eng.Rollback(ctx, "hello", v2.Name, origin("")); err != nil {
		t.Fatalf("rollback to the retired %s: %v", v2.Name, err)
	}
	versionRouteIs("rolled back to", v2.Name, true)
	routeIs("rollback to the retired version", policy.Policy{Split: map[string]int{v2.Name: 100}})
	if _, err := srv.eng.Rollback(ctx, "hello", v1.Name, origin("")); err != nil {
		t.Fatalf("rollback to %s: %v", v1.Name, err)
	}
	routeIs("rollback to v1", policy.Policy{Split: map[string]int{v1.Name: 100}})

	// An image that cannot be pulled, then a version that crash-loops.
	ctl.failGeneration("hello-003", 1, waiting("ImagePullBackOff", "not found", nil))
	v3 := deploy("registry.example/missing:{{.SHA}}", "ccc333", rollout.StrategyFull)
	if got := version(v3.Name); got.Status != rollout.StatusFailed || got.Reason.Code != "ImagePullFailed" {
		t.Fatalf("unpullable image: %s %+v", got.Status, got.Reason)
	}
	ctl.failGeneration("hello-004", 1, waiting("CrashLoopBackOff", "back-off", &corev1.ContainerStateTerminated{ExitCode: 2, Message: "panic: boom"}))
	v4 := deploy("registry.example/hello:{{.SHA}}", "ddd444", rollout.StrategyFull)
	if got := version(v4.Name); got.Status != rollout.StatusFailed || got.Reason.Code != "ProcessExited" || !strings.Contains(got.Reason.Detail, "panic: boom") {
		t.Fatalf("crash loop: %s %+v", got.Status, got.Reason)
	}
	routeIs("after the failed deploys", policy.Policy{Split: map[string]int{v1.Name: 100}})
	versionRouteIs("failed deploy", v3.Name, false)
	versionRouteIs("crash loop", v4.Name, false)

	// kill -9 of sluice while a full deploy waits for its rollout. The
	// rollout then completes while sluice is away; the restart on the same
	// data directory fails the version as Interrupted, scales it to zero
	// (its traffic never moved) and serves the stored policy.
	srv.stop()
	killMidDeploy(t, ctl, dbPath, defaultNS, ns, "registry.example/hello:{{.SHA}}", "hello-005")
	ctl.release("hello-005")
	eventually(t, "hello-005 to roll out while sluice is away", func() (bool, error) {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-005"}, d)
		return err == nil && d.Status.AvailableReplicas == 2, err
	})
	if srv, err = startServer(k8s, dbPath, defaultNS, quiet); err != nil {
		t.Fatalf("restart: %v", err)
	}
	srv.eng.Wait()
	if got := version("hello-005"); got.Status != rollout.StatusFailed || got.Reason.Code != reason.Interrupted {
		t.Fatalf("after kill -9 mid-deploy: %s %+v; want failed Interrupted", got.Status, got.Reason)
	}
	routeIs("after kill -9 and restart", policy.Policy{Split: map[string]int{v1.Name: 100}})
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-005"}, d); err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		t.Fatalf("the interrupted version's Deployment (%v) wants %d replicas; want it scaled to 0", err, replicasOf(d))
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-005"}, &gwv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
		t.Errorf("the interrupted version has a route of its own (%v); want none", err)
	}
	var stray gwv1.HTTPRouteList
	if err := k8s.List(ctx, &stray, client.InNamespace(defaultNS)); err != nil || len(stray.Items) != 0 {
		t.Errorf("routes in the runtime's default namespace after the restart: %v %d; want none: the service lives in %s", err, len(stray.Items), ns)
	}
	if got := version(v1.Name); got.Status != rollout.StatusNormal {
		t.Errorf("%s after the restart: %s %+v", v1.Name, got.Status, got.Reason)
	}
	// Deploying again, as the reason suggests, works.
	v6 := deploy("registry.example/hello:{{.SHA}}", "eee555", rollout.StrategyFull)
	if got := version(v6.Name); got.Status != rollout.StatusNormal {
		t.Fatalf("deploy after the restart: %s %+v", got.Status, got.Reason)
	}
	routeIs("deploy after the restart", policy.Policy{Split: map[string]int{v6.Name: 100}})
}
