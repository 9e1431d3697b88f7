package manifests_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// rbacObjects are the documents of the kubernetes runtime's components.
type rbacObjects struct {
	roles        []*rbacv1.Role
	clusterRoles []*rbacv1.ClusterRole
	bindings     []*rbacv1.RoleBinding
	clusterBinds []*rbacv1.ClusterRoleBinding
	accounts     []*corev1.ServiceAccount
	deployments  []*appsv1.Deployment
}

func decodeRBAC(o *rbacObjects, src []byte) error {
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
		case "rbac.authorization.k8s.io/v1 Role":
			target = appendNew(&o.roles)
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			target = appendNew(&o.clusterRoles)
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			target = appendNew(&o.bindings)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			target = appendNew(&o.clusterBinds)
		case "v1 ServiceAccount":
			target = appendNew(&o.accounts)
		case "apps/v1 Deployment":
			target = appendNew(&o.deployments)
		default:
			continue // the base's own kinds are checked by its tests
		}
		if err := unmarshalStrict(doc, target); err != nil {
			return fmt.Errorf("doc %d (%s): %w", i+1, tm.Kind, err)
		}
	}
	return nil
}

func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

func readRBAC(t *testing.T, files ...string) rbacObjects {
	t.Helper()
	var o rbacObjects
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeRBAC(&o, b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return o
}

// TestKubernetesRoleAndClusterRoleGrantTheSame: the cluster-wide component
// is the namespaced Role, widened; neither grants delete but on HTTPRoutes
// (a retired version's own route goes away).
func TestKubernetesRoleAndClusterRoleGrantTheSame(t *testing.T) {
	o := readRBAC(t, "kubernetes/role.yaml", "kubernetes-cluster/clusterrole.yaml", "kubernetes/serviceaccount.yaml", "kubernetes/deployment-patch.yaml")
	if len(o.roles) != 1 || len(o.clusterRoles) != 1 || len(o.bindings) != 1 || len(o.clusterBinds) != 1 || len(o.accounts) != 1 {
		t.Fatalf("want one Role, ClusterRole, RoleBinding, ClusterRoleBinding and ServiceAccount; got %+v", o)
	}
	if !reflect.DeepEqual(o.roles[0].Rules, o.clusterRoles[0].Rules) {
		t.Errorf("Role and ClusterRole differ:\n%+v\n%+v", o.roles[0].Rules, o.clusterRoles[0].Rules)
	}
	for _, r := range o.roles[0].Rules {
		for _, v := range r.Verbs {
			if v == "*" || v == "deletecollection" || v == "delete" && !reflect.DeepEqual(r.Resources, []string{"httproutes"}) {
				t.Errorf("rule %v grants %q; the runtime deletes only HTTPRoutes", r.Resources, v)
			}
		}
	}
	for _, s := range append(o.bindings[0].Subjects, o.clusterBinds[0].Subjects...) {
		if s.Kind != "ServiceAccount" || s.Name != o.accounts[0].Name {
			t.Errorf("binding subject %+v is not the sluice ServiceAccount", s)
		}
	}
	if o.bindings[0].RoleRef.Name != o.roles[0].Name || o.clusterBinds[0].RoleRef.Name != o.clusterRoles[0].Name {
		t.Errorf("bindings refer to %q and %q", o.bindings[0].RoleRef.Name, o.clusterBinds[0].RoleRef.Name)
	}
}

// TestKubernetesComponentBuilds builds an overlay that uses the base and both
// components, as the README tells users to.
func TestKubernetesComponentBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH")
	}
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, here)
	if err != nil {
		t.Fatal(err)
	}
	overlay := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: sluice\nresources: [%s]\ncomponents: [%s/kubernetes, %s/kubernetes-cluster]\n", rel, rel, rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	var o rbacObjects
	if err := decodeRBAC(&o, out); err != nil {
		t.Fatalf("kustomize output: %v", err)
	}
	if len(o.deployments) != 1 {
		t.Fatalf("built %d deployments; want 1", len(o.deployments))
	}
	pod := o.deployments[0].Spec.Template.Spec
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["SLUICE_RUNTIME"] != "kubernetes" || env["SLUICE_GATEWAY"] == "" || env["SLUICE_NAMESPACE"] != "fieldRef:metadata.namespace" {
		t.Errorf("sluice's environment: %v", env)
	}
	if pod.ServiceAccountName != "sluice" || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("pod runs as %q with automount %v; the runtime needs the sluice account's token", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if len(o.clusterBinds) != 1 || o.clusterBinds[0].Subjects[0].Namespace != "sluice" {
		t.Errorf("cluster role binding subjects: %+v", o.clusterBinds)
	}
}
