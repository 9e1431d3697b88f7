package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/sluicehq/sluice/bot/cli"
)

var update = flag.Bool("update", false, "rewrite README.md's generated serve flag table")

const (
	flagsBegin = "<!-- serve flags: generated from `sluice serve --help` by TestREADMEServeFlags; refresh with `go test ./cmd/sluice -run TestREADMEServeFlags -update` -->\n"
	flagsEnd   = "<!-- end of serve flags -->"
)

// helpEscaper keeps help text literal in a Markdown table cell.
var helpEscaper = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

// serveFlagsTable renders every flag of `sluice serve` from the same model
// --help prints: name, environment variable, default and help.
func serveFlagsTable(t *testing.T) string {
	t.Helper()
	var a app
	k, err := kong.New(&a, kong.Name("sluice"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| flag | environment | default | what it does |\n|---|---|---|---|\n")
	for _, n := range k.Model.Children {
		if n.Name != "serve" {
			continue
		}
		for _, f := range n.Flags {
			if f.Hidden {
				continue
			}
			env, def := "", ""
			if len(f.Envs) > 0 {
				env = "`" + strings.Join(f.Envs, "`, `") + "`"
			}
			if f.Default != "" {
				def = "`" + f.Default + "`"
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, env, def, helpEscaper.Replace(f.Help))
		}
	}
	return b.String()
}

// TestREADMEServeFlags keeps README.md's table of serve flags equal to
// what `sluice serve --help` says. A flag added without refreshing the
// table fails here, naming it and the command that refreshes the table.
func TestREADMEServeFlags(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	i, j := strings.Index(readme, flagsBegin), strings.Index(readme, flagsEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated serve flag table between\n%s and %s", flagsBegin, flagsEnd)
	}
	got, want := readme[i+len(flagsBegin):j], serveFlagsTable(t)
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i+len(flagsBegin)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var missing []string
	for _, l := range strings.Split(want, "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(l, "| "), " |"); ok && strings.HasPrefix(name, "`--") && !strings.Contains(got, "| "+name+" |") {
			missing = append(missing, name)
		}
	}
	t.Fatalf("README.md's serve flag table differs from `sluice serve --help` (flags missing: %v).\nRefresh it with: go test ./cmd/sluice -run TestREADMEServeFlags -update", missing)
}

// Sizes on the command line take the units of sluice.yaml; a size
// without a valid unit is refused before anything starts.
func TestServeSizesTakeUnits(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(sluiceBin, "serve", "--max-upload", "12parsecs", "--data", data,
		"--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--max-upload") || !strings.Contains(string(out), "512MiB") {
		t.Fatalf("serve --max-upload 12parsecs: %v %s", err, out)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused serve created its data directory: %v", err)
	}
	var s cli.Size
	for in, want := range map[string]int64{"512MiB": 512 << 20, "64KiB": 64 << 10, "1GB": 1e9, "1048576": 1 << 20} {
		if err := s.UnmarshalText([]byte(in)); err != nil || int64(s) != want {
			t.Errorf("size %q = %d, %v; want %d", in, s, err, want)
		}
	}
}
