package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeKubernetesFlags: a kubernetes runtime without a usable Gateway
// or cluster is refused at start, with a message naming the flag, before
// anything is stored.
func TestServeKubernetesFlags(t *testing.T) {
	t.Parallel()
	// Past the Prometheus flags the start would need a cluster: the
	// kubeconfig is missing, so a start that got that far fails differently.
	kubeArgs := []string{"--runtime", "kubernetes", "--gateway", "infra/edge", "--kubeconfig", "missing.yaml"}
	badQueries := filepath.Join(t.TempDir(), "queries.yaml")
	if err := os.WriteFile(badQueries, []byte("requests: a\nerrors: b\np99_ms: c\nlatency: d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", []string{"--runtime", "kubernetes"}, "--runtime kubernetes needs --gateway namespace/name"},
		{"gateway without namespace", []string{"--runtime", "kubernetes", "--gateway", "edge"}, `--gateway: gateway "edge": want namespace/name`},
		{"unknown runtime", []string{"--runtime", "docker"}, "--runtime must be one of"},
		{"no cluster", []string{"--runtime", "kubernetes", "--gateway", "infra/edge", "--kubeconfig", "missing.yaml"}, "load kubeconfig"},
		{"prometheus on the local runtime", []string{"--prometheus-url", "http://prometheus:9090"}, "are for --runtime kubernetes"},
		{"prometheus without a gateway kind", append(kubeArgs, "--prometheus-url", "http://prometheus:9090"), "--prometheus-url needs --gateway-kind"},
		{"unknown gateway kind", append(kubeArgs, "--prometheus-url", "http://prometheus:9090", "--gateway-kind", "nginx"), `unknown gateway kind "nginx": sluice ships queries for envoy-gateway, istio`},
		{"gateway kind without prometheus", append(kubeArgs, "--gateway-kind", "istio"), "need --prometheus-url"},
		{"prometheus URL without scheme", append(kubeArgs, "--prometheus-url", "prometheus:9090", "--gateway-kind", "istio"), "want http:// or https://"},
		{"query file with an unknown key", append(kubeArgs, "--prometheus-url", "http://prometheus:9090", "--prometheus-queries", badQueries), "field latency not found"},
		{"missing query file", append(kubeArgs, "--prometheus-url", "http://prometheus:9090", "--prometheus-queries", "absent.yaml"), "read query file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			cmd := exec.Command(sluiceBin, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0"}, tt.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("serve %v: %v\n%s\nwant an error containing %q", tt.args, err, out, tt.want)
			}
			if entries, _ := os.ReadDir(data); len(entries) != 0 {
				t.Errorf("a refused start left %d entries in the data directory", len(entries))
			}
		})
	}
}
