package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/reason"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// Defaults of the options.
const (
	// DefaultNamespace holds versions whose manifest names no namespace.
	DefaultNamespace = "default"
	// DefaultPoll is how often Start reads the Deployment's and pods' state.
	DefaultPoll = 500 * time.Millisecond
)

// Kube implements runtime.Runtime on a Kubernetes cluster: a version is a
// Deployment, a Service and (with an environment) a Secret per generation,
// written with server-side apply. It builds nothing: images are built
// elsewhere (CI) and named by the manifest's image template. Safe for
// concurrent use.
type Kube struct {
	c         client.Client
	namespace string
	poll      time.Duration
	log       *slog.Logger

	routes   *Traffic    // nil: versions get no route of their own
	released atomic.Bool // set by Release: Stop leaves versions running

	mu         sync.Mutex
	namespaces map[string]string // service → namespace its versions were last placed in
}

var (
	_ runtime.Runtime = (*Kube)(nil)
	_ runtime.Adopter = (*Kube)(nil)
)

// Option configures a Kube.
type Option func(*Kube)

// WithNamespace sets the namespace of versions whose manifest names none
// (default DefaultNamespace).
func WithNamespace(ns string) Option { return func(k *Kube) { k.namespace = ns } }

// WithPoll sets how often Start looks at the rollout (default DefaultPoll).
func WithPoll(d time.Duration) Option { return func(k *Kube) { k.poll = d } }

// WithVersionRoutes makes Start write each ready version's own HTTPRoute
// (its version URL, see VersionRoute) through t.
func WithVersionRoutes(t *Traffic) Option { return func(k *Kube) { k.routes = t } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(k *Kube) { k.log = l } }

// New returns a runtime that writes through c, whose scheme must know the
// core, apps and Gateway API v1 types (see NewScheme).
func New(c client.Client, opts ...Option) *Kube {
	k := &Kube{c: c, namespace: DefaultNamespace, poll: DefaultPoll, log: slog.Default(), namespaces: map[string]string{}}
	for _, o := range opts {
		o(k)
	}
	return k
}

// Namespace returns the namespace of service's versions, as last seen by
// Build or Start, or the default namespace. A service's HTTPRoutes live
// there too (see NewTraffic).
func (k *Kube) Namespace(service string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ns, ok := k.namespaces[service]; ok {
		return ns
	}
	return k.namespace
}

func (k *Kube) workload(spec runtime.Spec) Workload {
	ns := spec.Namespace
	if ns == "" {
		ns = k.namespace
	}
	k.mu.Lock()
	k.namespaces[spec.Service] = ns
	k.mu.Unlock()
	return Workload{
		Service: spec.Service, Version: spec.Version, Namespace: ns, Generation: spec.Generation,
		Image: spec.Image, SHA: spec.SHA, PR: spec.PR, Replicas: spec.Instances,
		Health: spec.Health, Env: spec.Env, StartTimeout: spec.StartTimeout,
	}
}

// Build checks that the version's objects can be made (the image template
// executes); there is nothing to compile. A problem is a *runtime.Failure
// with code StartFailed.
func (k *Kube) Build(_ context.Context, spec runtime.Spec) error {
	if _, err := Build(k.workload(spec), ""); err != nil {
		return &runtime.Failure{Code: reason.StartFailed, Detail: err.Error(),
			Suggestion: "Fix the kubernetes block of sluice.yaml (image template, namespace) and deploy again."}
	}
	return nil
}

// Start applies the version's objects and waits, up to spec.StartTimeout,
// until the Deployment reports every replica of this generation updated and
// available. An in-place redeploy (the Deployment exists with an older
// generation) rolls out a new ReplicaSet beside the old pods; if it fails,
// the previous pod template is applied again, so the old pods keep serving.
// A first deploy that fails is scaled to zero, its objects kept for
// inspection. The returned *runtime.Failure carries the reason read from the
// pods and the Deployment (see diagnose). notify is never called: readiness
// after Start is the cluster's business.
func (k *Kube) Start(ctx context.Context, spec runtime.Spec, _ func()) (runtime.Group, error) {
	w := k.workload(spec)
	objs, err := Build(w, "")
	if err != nil {
		return nil, &runtime.Failure{Code: reason.StartFailed, Detail: err.Error(),
			Suggestion: "Fix the kubernetes block of sluice.yaml and deploy again."}
	}
	var prev *appsv1.Deployment
	live := &appsv1.Deployment{}
	switch err := k.c.Get(ctx, client.ObjectKeyFromObject(objs.Deployment), live); {
	case err == nil && live.Annotations[AnnotationGeneration] != strconv.Itoa(w.Generation):
		prev = live.DeepCopy()
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get deployment %s: %w", w.Version, err)
	}
	dep, err := k.applyWorkload(ctx, w, objs)
	if err != nil {
		return nil, err
	}
	log := k.log.With("service", w.Service, "version", w.Version)
	fail := k.waitReady(ctx, w, dep)
	if fail == nil && k.routes != nil {
		if err := k.routes.ApplyVersionRoute(ctx, w.Service, w.Version); err != nil {
			log.Error("write version route", "err", err)
		}
	}
	if fail == nil {
		log.Info("version ready", "generation", w.Generation)
		return &group{k: k, ns: w.Namespace, service: w.Service, version: w.Version, gen: w.Generation, replicas: max(w.Replicas, 1)}, nil
	}
	// Undo with a context of its own: ctx may be what ended the wait.
	undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if prev != nil {
		err = k.revert(undo, prev)
	} else {
		err = errors.Join(k.scale(undo, w.Namespace, w.Version, 0), k.dropVersionRoute(undo, w.Service, w.Version))
	}
	if err != nil {
		log.Error("undo failed start", "err", err)
	}
	return nil, fail
}

// dropVersionRoute deletes the version's own route, when this runtime
// writes them.
func (k *Kube) dropVersionRoute(ctx context.Context, service, version string) error {
	if k.routes == nil {
		return nil
	}
	return k.routes.DeleteVersionRoute(ctx, service, version)
}

// applyWorkload writes the Deployment, then the Service and Secret owned by
// it, each only if it differs.
func (k *Kube) applyWorkload(ctx context.Context, w Workload, objs Objects) (*appsv1.Deployment, error) {
	dep := &appsv1.Deployment{}
	if _, err := apply(ctx, k.c, objs.Deployment, dep, func() bool {
		return equality.Semantic.DeepDerivative(objs.Deployment.Spec, dep.Spec)
	}); err != nil {
		return nil, err
	}
	owned, err := Build(w, dep.UID)
	if err != nil {
		return nil, err
	}
	svc := &corev1.Service{}
	if _, err := apply(ctx, k.c, owned.Service, svc, func() bool {
		return equality.Semantic.DeepDerivative(owned.Service.Spec, svc.Spec)
	}); err != nil {
		return nil, err
	}
	if owned.Secret != nil {
		sec := &corev1.Secret{}
		if _, err := apply(ctx, k.c, owned.Secret, sec, func() bool {
			return sameData(owned.Secret.StringData, sec.Data)
		}); err != nil {
			return nil, err
		}
	}
	return dep, nil
}

func sameData(want map[string]string, have map[string][]byte) bool {
	if len(want) != len(have) {
		return false
	}
	for k, v := range want {
		if string(have[k]) != v {
			return false
		}
	}
	return true
}

// revert applies a previous Deployment's pod template, replicas and
// annotations again, so its ReplicaSet takes over once more.
func (k *Kube) revert(ctx context.Context, prev *appsv1.Deployment) error {
	d := &appsv1.Deployment{
		TypeMeta:   deploymentType,
		ObjectMeta: objectMeta(prev.Name, prev.Namespace, prev.Labels, managedAnnotations(prev.Annotations), "", ""),
		Spec: appsv1.DeploymentSpec{
			Replicas: prev.Spec.Replicas, Selector: prev.Spec.Selector, Strategy: prev.Spec.Strategy,
			ProgressDeadlineSeconds: prev.Spec.ProgressDeadlineSeconds, RevisionHistoryLimit: prev.Spec.RevisionHistoryLimit,
			Template: prev.Spec.Template,
		},
	}
	_, err := apply(ctx, k.c, d, &appsv1.Deployment{}, func() bool { return false })
	return err
}

// managedAnnotations keeps the annotations sluice sets.
func managedAnnotations(a map[string]string) map[string]string {
	out := map[string]string{}
	for _, key := range []string{AnnotationSHA, AnnotationPR, AnnotationGeneration} {
		if v, ok := a[key]; ok {
			out[key] = v
		}
	}
	return out
}

// scale sets a version's replicas with a merge patch of that one field. (An
// apply naming only replicas would tell the API server that sluice no
// longer manages the rest of the Deployment, which it would then remove.)
func (k *Kube) scale(ctx context.Context, ns, version string, replicas int32) error {
	d := &appsv1.Deployment{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: version}, d); err != nil {
		return fmt.Errorf("get deployment %s: %w", version, err)
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas == replicas {
		return nil
	}
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
	if err := k.c.Patch(ctx, d, patch, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("scale deployment %s to %d: %w", version, replicas, err)
	}
	return nil
}

// waitReady polls until the rollout of w is complete or diagnose finds a
// reason it will not be, or the start timeout passes.
func (k *Kube) waitReady(ctx context.Context, w Workload, dep *appsv1.Deployment) *runtime.Failure {
	timeout := w.StartTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(k.poll)
	defer tick.Stop()
	replicas := int32(max(w.Replicas, 1))
	for {
		st, err := k.observe(ctx, w)
		switch {
		case err != nil:
			k.log.Warn("observe rollout", "service", w.Service, "version", w.Version, "err", err)
		case rolledOut(st.deployment, dep.Generation, replicas):
			return nil
		default:
			if f := diagnose(st, false); f != nil {
				return f
			}
		}
		select {
		case <-ctx.Done():
			return &runtime.Failure{Code: reason.StartFailed, Detail: "the start was interrupted: " + ctx.Err().Error(),
				Suggestion: "Deploy again."}
		case <-deadline.C:
			st, err := k.observe(ctx, w)
			if err != nil {
				return &runtime.Failure{Code: reason.HealthCheckTimeout,
					Detail:     fmt.Sprintf("the Deployment did not become available within %s, and its state could not be read: %v", timeout, err),
					Suggestion: "Check the cluster with kubectl describe deployment " + w.Version + "."}
			}
			return diagnose(st, true)
		case <-tick.C:
		}
	}
}

// rolledOut reports whether the Deployment's controller has seen generation
// gen and every replica of it is updated, ready and available.
func rolledOut(d *appsv1.Deployment, gen int64, replicas int32) bool {
	s := d.Status
	return s.ObservedGeneration >= gen && s.UpdatedReplicas >= replicas && s.ReadyReplicas >= replicas &&
		s.AvailableReplicas >= replicas && s.Replicas == s.UpdatedReplicas
}

// state is what diagnose reads: the Deployment and the pods of the
// generation being started.
type state struct {
	deployment *appsv1.Deployment
	pods       []corev1.Pod
	events     []corev1.Event // readiness probe failures of those pods
}

func (k *Kube) observe(ctx context.Context, w Workload) (state, error) {
	var st state
	st.deployment = &appsv1.Deployment{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Version}, st.deployment); err != nil {
		return st, fmt.Errorf("get deployment %s: %w", w.Version, err)
	}
	var pods corev1.PodList
	if err := k.c.List(ctx, &pods, client.InNamespace(w.Namespace),
		client.MatchingLabels{LabelService: w.Service, LabelVersion: w.Version}); err != nil {
		return st, fmt.Errorf("list pods of %s: %w", w.Version, err)
	}
	gen := strconv.Itoa(w.Generation)
	for _, p := range pods.Items {
		if p.Annotations[AnnotationGeneration] == gen && p.DeletionTimestamp == nil {
			st.pods = append(st.pods, p)
		}
	}
	if len(st.pods) == 0 {
		return st, nil
	}
	// One list covers every pod: the namespace's Unhealthy events of any
	// of this generation's pods.
	uids := make(map[types.UID]bool, len(st.pods))
	for _, p := range st.pods {
		uids[p.UID] = true
	}
	var evs corev1.EventList
	if err := k.c.List(ctx, &evs, client.InNamespace(w.Namespace)); err != nil {
		return st, fmt.Errorf("list events of %s: %w", w.Version, err)
	}
	for _, e := range evs.Items {
		if uids[e.InvolvedObject.UID] && e.Reason == "Unhealthy" {
			st.events = append(st.events, e)
		}
	}
	return st, nil
}

// group is one started generation of a version.
type group struct {
	k        *Kube
	ns       string
	service  string
	version  string
	gen      int
	replicas int

	mu      sync.Mutex
	stopped bool
}

// Instances reports the version's Service as its one address; the pods
// behind it are the cluster's to balance.
func (g *group) Instances() []runtime.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	return []runtime.Instance{{Addr: fmt.Sprintf("%s.%s.svc:%d", g.version, g.ns, ServicePort), Up: !g.stopped}}
}

// Stop scales the version to zero and deletes the route of its own URL
// (retire), unless a newer generation has taken the Deployment over (an
// in-place redeploy replaced this one), in which case there is nothing of
// this generation left to stop. Idempotent.
func (g *group) Stop(ctx context.Context, _ time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped || g.k.released.Load() {
		return nil
	}
	live := &appsv1.Deployment{}
	if err := g.k.c.Get(ctx, client.ObjectKey{Namespace: g.ns, Name: g.version}, live); err != nil {
		if apierrors.IsNotFound(err) {
			g.stopped = true
			return nil
		}
		return fmt.Errorf("get deployment %s: %w", g.version, err)
	}
	if live.Annotations[AnnotationGeneration] == strconv.Itoa(g.gen) {
		if err := g.k.scale(ctx, g.ns, g.version, 0); err != nil {
			return err
		}
		if err := g.k.dropVersionRoute(ctx, g.service, g.version); err != nil {
			return err
		}
	}
	g.stopped = true
	return nil
}

// Logs returns the last termination messages of the version's containers:
// the tail of their output when they failed (TerminationMessagePolicy
// FallbackToLogsOnError). Full logs are the cluster's (kubectl logs).
// The API server is asked with ctx, for 10 s at most.
func (k *Kube) Logs(ctx context.Context, version string, max int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Versions are named "<service>-NNN".
	service := version
	if i := strings.LastIndexByte(version, '-'); i > 0 {
		service = version[:i]
	}
	var pods corev1.PodList
	if err := k.c.List(ctx, &pods, client.InNamespace(k.Namespace(service)), client.MatchingLabels{LabelVersion: version}); err != nil {
		return "", fmt.Errorf("list pods of %s: %w", version, err)
	}
	var out string
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.LastTerminationState.Terminated; t != nil && t.Message != "" {
				out += fmt.Sprintf("--- %s (exit %d)\n%s\n", p.Name, t.ExitCode, t.Message)
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// Release is called when sluice shuts down: from then on, stopping a group
// leaves its version running, since versions on a cluster keep serving
// while sluice is away and the next start adopts them. Retiring a version
// (a Stop before Release) scales it to zero.
func (k *Kube) Release() { k.released.Store(true) }

// Adopt implements runtime.Adopter: at sluice's start-up it records the
// namespace of spec's service (so that its HTTPRoute is written there
// before any version starts again) and, when run is false, scales the
// version's Deployment to zero and deletes the route of its own URL: a
// deploy that sluice's crash interrupted was applied and may have become
// ready since, but its version is failed and must not keep pods or a URL.
// A version with no Deployment is fine.
func (k *Kube) Adopt(ctx context.Context, spec runtime.Spec, run bool) error {
	w := k.workload(spec)
	if run {
		return nil
	}
	err := k.scale(ctx, w.Namespace, w.Version, 0)
	if apierrors.IsNotFound(err) {
		err = nil
	}
	return errors.Join(err, k.dropVersionRoute(ctx, w.Service, w.Version))
}

// Cleanup does nothing: versions on a cluster outlive sluice on purpose, and
// Start adopts their objects again on restart.
func (k *Kube) Cleanup(context.Context) error { return nil }
