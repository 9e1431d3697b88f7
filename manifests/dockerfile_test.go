package manifests_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	body        []instruction
}

// parseDockerfile reads a Dockerfile into stages: comments and blank lines
// dropped, "\" continuations joined, instructions before the first FROM
// (ARG) ignored.
func parseDockerfile(src string) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") { // --platform=...
				f = f[1:]
			}
			switch {
			case len(f) == 1:
				stages = append(stages, stage{image: f[0]})
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				stages = append(stages, stage{image: f[0], name: f[2]})
			default:
				return fmt.Errorf("line %d: cannot read FROM %s", in.line, in.args)
			}
			return nil
		}
		if len(stages) > 0 {
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if t := strings.TrimSpace(line); cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, cont := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return stages, sc.Err()
}

// find returns the stage's instructions of cmd.
func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// user returns the stage's last USER, or "" for the base image's default.
func (s stage) user() string {
	us := s.find("USER")
	if len(us) == 0 {
		return ""
	}
	return us[len(us)-1].args
}

// entrypoint returns the stage's last ENTRYPOINT, which must be the exec
// (JSON) form: the shell form would need a shell distroless lacks.
func (s stage) entrypoint() ([]string, error) {
	es := s.find("ENTRYPOINT")
	if len(es) == 0 {
		return nil, nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(es[len(es)-1].args), &argv); err != nil {
		return nil, fmt.Errorf("line %d: ENTRYPOINT is not in exec form: %v", es[len(es)-1].line, err)
	}
	return argv, nil
}

// nonRoot reports whether a USER value names neither root nor uid 0.
func nonRoot(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" {
		return false
	}
	if uid, err := strconv.Atoi(name); err == nil {
		return uid != 0
	}
	return true
}

func readDockerfile(t *testing.T) []stage {
	t.Helper()
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages
}

var cgoOff = regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`)

func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	final := stages[len(stages)-1]

	// Some stage builds ./cmd/sluice statically.
	builder := -1
	for i, s := range stages {
		for _, in := range s.find("RUN") {
			if strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/sluice") {
				builder = i
				env := ""
				for _, e := range s.find("ENV") {
					env += " " + e.args
				}
				if !cgoOff.MatchString(in.args) && !cgoOff.MatchString(env) {
					t.Errorf("line %d: go build without CGO_ENABLED=0: the binary would need libc", in.line)
				}
			}
		}
	}
	if builder < 0 || builder == len(stages)-1 {
		t.Fatalf("no earlier stage runs go build ./cmd/sluice")
	}

	// The final image is distroless/static or scratch, by a pinned tag.
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static* or scratch", final.image)
	}

	// Every stage that runs sluice runs it as a non-root user, with exec-form
	// `sluice serve`, from a binary copied out of the builder.
	for i, s := range stages {
		argv, err := s.entrypoint()
		if err != nil {
			t.Error(err)
			continue
		}
		if argv == nil {
			if i == len(stages)-1 {
				t.Error("the final stage has no ENTRYPOINT")
			}
			continue
		}
		if !nonRoot(s.user()) {
			t.Errorf("stage FROM %s runs as USER %q, want a non-root user", s.image, s.user())
		}
		if len(argv) != 2 || path.Base(argv[0]) != "sluice" || argv[1] != "serve" {
			t.Errorf("stage FROM %s: ENTRYPOINT %q, want [<path>/sluice serve]", s.image, argv)
			continue
		}
		copied := false
		for _, in := range s.find("COPY") {
			f := strings.Fields(in.args)
			copied = copied || (len(f) == 3 && f[0] == "--from="+stages[builder].name && f[2] == argv[0])
		}
		if !copied {
			t.Errorf("stage FROM %s does not COPY --from=%s to %s", s.image, stages[builder].name, argv[0])
		}
	}

	// Every base image is pinned to a tag, and the builder's Go is go.mod's.
	for _, s := range stages {
		if s.image == "scratch" {
			continue
		}
		_, tag, ok := strings.Cut(path.Base(s.image), ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("FROM %s: pin a tag", s.image)
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if want == nil || !strings.HasPrefix(stages[builder].image, "golang:"+string(want[1])) {
		t.Errorf("builder FROM %s, want golang:%s (go.mod)", stages[builder].image, want[1])
	}
}

func TestDockerignoreKeepsTheSources(t *testing.T) {
	src, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(src), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			// "**/x" matches x at any depth; a directory pattern covers its tree.
			for _, cand := range []string{pat, strings.TrimPrefix(pat, "**/")} {
				for q := p; q != "." && q != "/"; q = path.Dir(q) {
					if m, _ := path.Match(cand, q); m {
						return true
					}
					if strings.HasPrefix(pat, "**/") {
						if m, _ := path.Match(cand, path.Base(q)); m {
							return true
						}
					}
				}
			}
		}
		return false
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/sluice/main.go", "store/store.go", "rollout/engine.go", "bot/api/api.go"} {
		if ignored(p) {
			t.Errorf(".dockerignore drops %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git/HEAD", ".sluice/sluice.db", "store/store_test.go"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	// The checks above are only as good as the parser.
	stages, err := parseDockerfile("ARG X=1\n# c\nFROM --platform=$BUILDPLATFORM golang:1.26 AS b\nRUN a \\\n  b\n\nFROM scratch\nUSER 0:0\nENTRYPOINT [\"/s\", \"serve\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].name != "b" || stages[0].image != "golang:1.26" || stages[1].image != "scratch" {
		t.Fatalf("stages = %+v", stages)
	}
	if r := stages[0].find("RUN"); len(r) != 1 || r[0].args != "a    b" || r[0].line != 4 {
		t.Errorf("RUN = %+v, want the continuation joined, line 4", r)
	}
	if nonRoot(stages[1].user()) {
		t.Errorf("USER %q counted as non-root", stages[1].user())
	}
	for _, u := range []string{"", "root", "0", "0:65532", "root:root"} {
		if nonRoot(u) {
			t.Errorf("nonRoot(%q) = true", u)
		}
	}
	for _, u := range []string{"65532", "65532:65532", "nonroot", "nonroot:nonroot"} {
		if !nonRoot(u) {
			t.Errorf("nonRoot(%q) = false", u)
		}
	}
	if _, err := parseDockerfile("FROM a b c d\n"); err == nil {
		t.Error("a bad FROM parsed")
	}
	if _, err := (stage{body: []instruction{{cmd: "ENTRYPOINT", args: "sluice serve"}}}).entrypoint(); err == nil {
		t.Error("shell-form ENTRYPOINT accepted")
	}
}
