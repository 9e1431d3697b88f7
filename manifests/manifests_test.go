package manifests_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization this base uses;
// decoding is strict, so a field outside it (or a typo) fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// objects are the decoded resources of the base.
type objects struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pvcs        []*corev1.PersistentVolumeClaim
}

// splitDocs splits a multi-document YAML stream at its "---" lines,
// dropping documents that hold only comments.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		for _, line := range strings.Split(cur.String(), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, append([]byte(nil), cur.Bytes()...))
				break
			}
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

// decode strictly decodes each document of src into its API type, chosen
// by apiVersion and kind, and appends it to o.
func decode(o *objects, src []byte) error {
	for i, doc := range splitDocs(src) {
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("doc %d: %w", i+1, err)
		}
		var target any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			o.deployments, target = append(o.deployments, d), d
		case "v1 Service":
			s := &corev1.Service{}
			o.services, target = append(o.services, s), s
		case "v1 PersistentVolumeClaim":
			p := &corev1.PersistentVolumeClaim{}
			o.pvcs, target = append(o.pvcs, p), p
		default:
			return fmt.Errorf("doc %d: unexpected %q %q; teach this test its type", i+1, tm.APIVersion, tm.Kind)
		}
		if err := unmarshalStrict(doc, target); err != nil {
			return fmt.Errorf("doc %d (%s): %w", i+1, tm.Kind, err)
		}
	}
	return nil
}

// unmarshalStrict decodes YAML as the API server does in strict mode: field
// names are case-sensitive (encoding/json, under yaml.UnmarshalStrict,
// would take "targetport" for targetPort), unknown and duplicate fields are
// errors.
func unmarshalStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// load reads the kustomization and every resource it lists.
func load(t *testing.T) (kustomization, objects) {
	t.Helper()
	var k kustomization
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var o objects
	for _, r := range k.Resources {
		src, err := os.ReadFile(r)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", r, err)
		}
		if err := decode(&o, src); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
	return k, o
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k, o := load(t)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization is %s %s", k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(k.Resources, f) {
			t.Errorf("%s is not listed in kustomization.yaml: kubectl apply -k would skip it", f)
		}
	}
	for _, img := range k.Images {
		found := false
		for _, c := range o.deployments[0].Spec.Template.Spec.Containers {
			found = found || imageName(c.Image) == img.Name
		}
		if !found {
			t.Errorf("kustomization images entry %q matches no container image", img.Name)
		}
	}
}

func imageName(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}

func TestDeploymentInvariants(t *testing.T) {
	_, o := load(t)
	if len(o.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(o.deployments))
	}
	d := o.deployments[0]
	spec := d.Spec.Template.Spec
	// bbolt's exclusive lock: never two pods on the data at once.
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy = %q, want Recreate", d.Spec.Strategy.Type)
	}
	if d.Spec.Selector == nil || !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) || len(d.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("selector %v does not select the template's labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Error("enableServiceLinks must be false: Services named sluice-* would inject SLUICE_*_PORT variables")
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root and ALL capabilities dropped", sc)
	}
	if !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":") {
		t.Errorf("image %q has no tag", c.Image)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s; want both, request <= limit", r, req.String(), lim.String())
		}
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e
	}

	// The probes ask sluice's /healthz on the API port.
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet", name)
			continue
		}
		if p.HTTPGet.Path != "/healthz" || resolve(p.HTTPGet.Port.String(), ports) != 8080 {
			t.Errorf("%s probe: %s on port %s, want /healthz on 8080", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}

	// The listen addresses are the container ports, on every interface.
	for variable, port := range map[string]string{"SLUICE_LISTEN": "api", "SLUICE_ROUTER_LISTEN": "router"} {
		host, p, err := net.SplitHostPort(env[variable].Value)
		n, _ := strconv.Atoi(p)
		if err != nil || host != "0.0.0.0" || int32(n) != ports[port] || n == 0 {
			t.Errorf("%s = %q, want 0.0.0.0:<the %s container port, %d>", variable, env[variable].Value, port, ports[port])
		}
	}
	if ports["api"] != 8080 || ports["router"] != 8000 {
		t.Errorf("container ports %v, want api 8080 and router 8000", ports)
	}

	// Secrets come from Secrets, never from literal values.
	for _, variable := range []string{"SLUICE_TOKEN", "SLUICE_GITHUB_WEBHOOK_SECRET"} {
		e := env[variable]
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: want valueFrom.secretKeyRef, got %+v", variable, e)
		}
	}
	if ref := env["SLUICE_GITHUB_WEBHOOK_SECRET"].ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name != "sluice-github" {
		t.Errorf("webhook secret from %q, want sluice-github", ref.SecretKeyRef.Name)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s names no volume %q", m.MountPath, m.Name)
		}
	}

	// SLUICE_DATA is a mounted claim that pvc.yaml defines.
	data := env["SLUICE_DATA"].Value
	m, ok := mounts[data]
	if data == "" || !ok || m.ReadOnly {
		t.Fatalf("SLUICE_DATA = %q: want a writable volume mounted there (mounts: %v)", data, c.VolumeMounts)
	}
	if v := volumes[m.Name]; v.PersistentVolumeClaim == nil || !slices.ContainsFunc(o.pvcs, func(p *corev1.PersistentVolumeClaim) bool {
		return p.Name == v.PersistentVolumeClaim.ClaimName
	}) {
		t.Errorf("the data volume %q is not a claim defined in pvc.yaml", m.Name)
	}
	// A read-only root still needs a writable /tmp.
	if tmp, ok := mounts["/tmp"]; !ok || volumes[tmp.Name].EmptyDir == nil {
		t.Error("no emptyDir mounted at /tmp")
	}

	// The App's private key is a file of the sluice-github Secret, mounted
	// read-only, readable by the pod's group.
	keyPath := env["SLUICE_GITHUB_PRIVATE_KEY"].Value
	km, ok := mounts[filepath.Dir(keyPath)]
	if !ok || !km.ReadOnly {
		t.Fatalf("SLUICE_GITHUB_PRIVATE_KEY = %q: want a file in a read-only mount", keyPath)
	}
	sv := volumes[km.Name].Secret
	if sv == nil || sv.SecretName != "sluice-github" || !slices.ContainsFunc(sv.Items, func(k corev1.KeyToPath) bool {
		return k.Path == filepath.Base(keyPath)
	}) {
		t.Errorf("the key volume %+v does not project %s from sluice-github", sv, filepath.Base(keyPath))
	}
	if sv != nil && (sv.DefaultMode == nil || *sv.DefaultMode != 0o440) {
		t.Errorf("key file mode %v: want 0440, readable by the pod's fsGroup only", sv.DefaultMode)
	}
}

func TestServicesReachTheContainer(t *testing.T) {
	_, o := load(t)
	c := o.deployments[0].Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	covered := map[int32]bool{}
	for _, s := range o.services {
		if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, o.deployments[0].Spec.Template.Labels) {
			t.Errorf("service %s selector %v does not select the sluice pod", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			target := resolve(p.TargetPort.String(), ports)
			if target == 0 || p.Port != target {
				t.Errorf("service %s port %s: %d → %s, want a container port and the same number", s.Name, p.Name, p.Port, p.TargetPort.String())
			}
			covered[target] = true
		}
	}
	for name, p := range ports {
		if !covered[p] {
			t.Errorf("container port %s (%d) has no Service", name, p)
		}
	}
}

func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH")
	}
	out, err := exec.Command(kubectl, "kustomize", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	var o objects
	if err := decode(&o, out); err != nil {
		t.Fatalf("kustomize output: %v", err)
	}
	if len(o.deployments) != 1 || len(o.services) != 2 || len(o.pvcs) != 1 {
		t.Errorf("kustomize built %d deployments, %d services, %d claims; want 1, 2, 1", len(o.deployments), len(o.services), len(o.pvcs))
	}
}

func TestDecodingIsStrict(t *testing.T) {
	// The checks above are only as good as the decoder: a typo must fail.
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 1\n",
		"apiVersion: v1\nkind: Service\nspec:\n  ports:\n    - port: 80\n      targetport: api\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
		"apiVersion: v1\nkind: PersistentVolumeClaim\nspec:\n  accessModes: ReadWriteOnce\n",
		"apiVersion: apps/v1beta1\nkind: Deployment\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          readinessprobe: {}\n",
	} {
		if err := decode(&objects{}, []byte(doc)); err == nil {
			t.Errorf("decoding accepted:\n%s", doc)
		}
	}
	var o objects
	if err := decode(&o, []byte("# only a comment\n---\napiVersion: v1\nkind: Service\n---\n")); err != nil || len(o.services) != 1 {
		t.Errorf("splitting: %v, %d services; want 1", err, len(o.services))
	}
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolve turns a port given by name or number into its number.
func resolve(port string, named map[string]int32) int32 {
	if n, err := strconv.Atoi(port); err == nil {
		return int32(n)
	}
	return named[port]
}
