package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestServeKubernetesFlags: a kubernetes runtime without a usable Gateway
// or cluster is refused at start, with a message naming the flag, before
// anything is stored.
func TestServeKubernetesFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", []string{"--runtime", "kubernetes"}, "--runtime kubernetes needs --gateway namespace/name"},
		{"gateway without namespace", []string{"--runtime", "kubernetes", "--gateway", "edge"}, `--gateway: gateway "edge": want namespace/name`},
		{"unknown runtime", []string{"--runtime", "docker"}, "--runtime must be one of"},
		{"no cluster", []string{"--runtime", "kubernetes", "--gateway", "infra/edge", "--kubeconfig", "missing.yaml"}, "load kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
