package kube

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/testpar"
)

// The tests below run against a real kube-apiserver and etcd (built by
// hack/kubebins/build.sh; KUBEBUILDER_ASSETS names their directory) with the
// Gateway API standard CRDs installed. No controller runs: where a
// Deployment, a pod or a gateway would report progress, the test writes that
// status itself, as the controller would, and says so.
var (
	testREST       *rest.Config
	testKubeconfig []byte // admin kubeconfig of the control plane, for child processes
	k8s            client.Client
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "deploy" {
		os.Exit(childDeploy())
	}
	// The cluster tests mostly wait on the API server (and on rollouts
	// the test completes itself), so more of them run at once than there
	// are CPUs, unless -parallel says otherwise.
	testpar.MostlyWaiting()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("CI") != "" {
			fmt.Println("KUBEBUILDER_ASSETS is unset under CI: .ci/run must build the control plane with hack/kubebins/build.sh")
			os.Exit(1)
		}
		// The translation tests need no cluster; the others skip.
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	crds, err := gatewayCRDs()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	scheme, err := NewScheme()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		// Two loaded cores: the default 20 s per process is too tight.
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.GetAPIServer().Configure().
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none")
	cfg, err := env.Start()
	if err != nil {
		fmt.Println("start control plane:", err)
		_ = env.Stop()
		return 1
	}
	defer func() { _ = env.Stop() }()
	if err := watchdog(); err != nil {
		fmt.Println(err)
		return 1
	}
	testREST, testKubeconfig = cfg, env.KubeConfig
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Println("client:", err)
		return 1
	}
	return m.Run()
}

// countingClient returns a client of its own that counts the mutating
// requests (anything but GET and HEAD) it sends.
func countingClient(t *testing.T) (client.Client, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	cfg := rest.CopyConfig(testREST)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countWrites{rt, n} }
	c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c, n
}

type countWrites struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// gatewayCRDs finds the standard-channel CRDs of the Gateway API version
// sluice requires, in the module cache.
func gatewayCRDs() (string, error) {
	if d := os.Getenv("GATEWAY_API_CRDS"); d != "" {
		return d, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("find the Gateway API module: %v; set GATEWAY_API_CRDS", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard"), nil
}

// watchdog makes sure the control plane dies with this process even when it
// is killed (SIGKILL, a test timeout): envtest starts etcd and kube-apiserver
// in process groups of their own, which outlive the test binary. A shell
// outside our process group waits for this process to disappear, then kills
// exactly those children.
func watchdog() error {
	self := os.Getpid()
	var kids []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", self))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		kids = append(kids, strings.Fields(string(b))...)
	}
	if len(kids) == 0 {
		return nil // not Linux, or nothing to guard
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; kill -9 %s 2>/dev/null; exit 0", self, strings.Join(kids, " "))
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start control-plane watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// namespace creates a namespace of the test's own (namespaces are never
// deleted here: no namespace controller runs), or skips the test when no
// control plane was started (KUBEBUILDER_ASSETS unset outside CI).
func namespace(t *testing.T) string {
	t.Helper()
	if k8s == nil {
		t.Skip("needs a control plane: export KUBEBUILDER_ASSETS=$(hack/kubebins/build.sh) (about ten minutes the first time, cached afterwards)")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// eventually polls cond until it holds or the test's deadline nears.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	var last error
	for time.Now().Before(deadline.Add(-5 * time.Second)) {
		done, err := cond()
		if done {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s (last error: %v)", what, last)
}
