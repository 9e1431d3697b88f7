package kube

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/router"
	"github.com/sluicehq/sluice/store"
)

// The kill -9 step of TestScenario runs sluice's engine in a child process
// (this test binary again, with childEnv set) so that it can be killed
// with SIGKILL in the middle of a deploy, exactly as a crash would.
const (
	childEnv         = "SLUICE_KUBE_TEST_CHILD" // "deploy": run childDeploy instead of the tests
	childKubeconfig  = "SLUICE_KUBE_TEST_KUBECONFIG"
	childData        = "SLUICE_KUBE_TEST_DATA"
	childDefaultNS   = "SLUICE_KUBE_TEST_DEFAULT_NAMESPACE"
	childManifestNS  = "SLUICE_KUBE_TEST_NAMESPACE"
	childImage       = "SLUICE_KUBE_TEST_IMAGE"
	childDeployingAs = "deploying "
)

// server is sluice's engine on the kubernetes runtime, wired as
// `sluice serve --runtime kubernetes` wires it: versions whose sluice.yaml
// names no namespace go to defaultNS, routes go where the runtime says a
// service lives.
type server struct {
	db  *store.DB
	k   *Kube
	eng *rollout.Engine
}

func startServer(c client.Client, dbPath, defaultNS string, log *slog.Logger, opts ...rollout.Option) (*server, error) {
	db, err := store.Open(dbPath, store.WithLogger(log))
	if err != nil {
		return nil, err
	}
	var k *Kube
	tr := NewTraffic(c, testGateway, "apps.example.com", func(s string) string { return k.Namespace(s) }).WithPoll(20 * time.Millisecond)
	k = New(c, WithNamespace(defaultNS), WithPoll(20*time.Millisecond), WithVersionRoutes(tr), WithLogger(log))
	eng := rollout.New(db, k, router.New("apps.example.com"), "apps.example.com",
		append([]rollout.Option{rollout.WithDataPlane(tr), rollout.WithLogger(log)}, opts...)...)
	if err := eng.Recover(context.Background()); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &server{db: db, k: k, eng: eng}, nil
}

// stop shuts the engine down as sluice does on SIGTERM: versions keep
// running on the cluster.
func (s *server) stop() {
	s.k.Release()
	_ = s.eng.Close(context.Background())
	_ = s.db.Close()
}

// childDeploy is the child's main: it starts a server on the data
// directory it is given, deploys service hello (strategy full), prints
// "deploying <version>" once the version is recorded, and waits to be
// killed.
func childDeploy() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := Connect(os.Getenv(childKubeconfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := startServer(c, os.Getenv(childData), os.Getenv(childDefaultNS), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	src, err := manifestArchive(os.Getenv(childImage), os.Getenv(childManifestNS))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	v, err := s.eng.Deploy(context.Background(), rollout.DeployRequest{Service: "hello", Archive: src, Strategy: rollout.StrategyFull,
		Origin: rollout.Origin{Via: "test", Ref: "eee555", PR: 12, Principal: rollout.Principal{Admin: true}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		return 1
	}
	fmt.Println(childDeployingAs + v.Name)
	select {}
}

// killMidDeploy runs a child sluice on dbPath, waits until its deploy of
// service hello (which must become version next) has applied the version's
// objects and is waiting for the rollout (the controllers hold next back),
// and kills it with SIGKILL.
func killMidDeploy(t *testing.T, ctl *controllers, dbPath, defaultNS, ns, image, next string) {
	t.Helper()
	ctl.hold(next)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, testKubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=deploy", childKubeconfig+"="+kubeconfig, childData+"="+dbPath,
		childDefaultNS+"="+defaultNS, childManifestNS+"="+ns, childImage+"="+image)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("child sluice stderr:\n%s", stderr.String())
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != childDeployingAs+next {
		t.Fatalf("child sluice said %q (%v); want %q", line, err, childDeployingAs+next)
	}
	version := next
	// The deploy is waiting for the rollout once the Deployment and its
	// Service are written.
	eventually(t, "the child's deploy to apply "+version, func() (bool, error) {
		var svc corev1.Service
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: version}, &svc)
		return err == nil, err
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child sluice ended with %v; want killed\n%s", err, stderr.String())
	}
}
