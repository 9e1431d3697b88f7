package render

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// golden compares got with testdata/<name>.golden, or rewrites the file
// when -update is given.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\ngot:  %q\nwant: %q\n(run go test -update to accept)", path, i+1, g, w)
			}
		}
	}
}

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

const buildDetail = "The build command `go build -o app .` exited with status 1 after 2.1s. Last lines of the build log:\n" +
	"# example.com/hello\n./main.go:12:2: undefined: greet\n./main.go:14:9: too many return values"

const runDetail = "Instance 0 (run command `./app`, port 41234) exited with status 2 before it passed the health check at /healthz. Last lines of its log (instance-0.log):\n" +
	"listening on :41234\npanic: missing GREETING\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:20 +0x1d"

func canaryStatus() rollout.ServiceStatus {
	return rollout.ServiceStatus{
		Name: "hello", URL: "http://hello.localtest.me:8080/", Stable: "hello-003",
		Policy: policy.Policy{
			Rules: []policy.Rule{
				{Version: "hello-004", Match: map[string]string{"env": "beta*"}},
				{Version: "hello-004", Match: map[string]string{"user": "{alice,bob}", "region": "eu"}},
			},
			Split: map[string]int{"hello-003": 90, "hello-004": 10},
		},
		Versions: []rollout.VersionStatus{
			vs("hello-001", 1, rollout.StatusStopped, 0),
			vs("hello-002", 2, rollout.StatusNormal, 0),
			vs("hello-003", 3, rollout.StatusNormal, 90),
			withRules(vs("hello-004", 4, rollout.StatusNormal, 10), 1, 2),
		},
	}
}

func failedStatus() rollout.ServiceStatus {
	failed := vs("hello-005", 5, rollout.StatusFailed, 0)
	failed.Reason = rollout.Reason{Code: "ProcessExited", Detail: runDetail,
		Suggestion: "Check that the app reads its settings (GREETING) and listens on $PORT; the log above shows why it stopped."}
	dfailed := vs("hello-004", 4, rollout.StatusDeployFailed, 100)
	dfailed.Reason = rollout.Reason{Code: "HealthCheckFailed",
		Detail:     "Instance 0 (127.0.0.1:41301) answered GET /healthz with HTTP 503, never with 2xx, within the start timeout of 1m0s. Last lines of its log (instance-0.log):\nstarting\nhealth: database unreachable",
		Suggestion: "Make /healthz answer 2xx once the app is ready, or fix what it reports; the previous configuration keeps serving."}
	return rollout.ServiceStatus{
		Name: "hello", URL: "http://hello.localtest.me:8080/", Stable: "hello-004",
		Policy: policy.Policy{Split: map[string]int{"hello-004": 100}},
		Versions: []rollout.VersionStatus{
			vs("hello-003", 3, rollout.StatusNormal, 0),
			dfailed,
			failed,
			vs("hello-006", 6, rollout.StatusCreating, 0),
		},
	}
}

func vs(name string, seq int, st rollout.Status, traffic int) rollout.VersionStatus {
	return rollout.VersionStatus{
		Version: rollout.Version{Name: name, Service: "hello", Seq: seq, Status: st, CreatedAt: t0},
		URL:     "http://" + name + ".hello.localtest.me:8080/",
		Traffic: traffic,
		Rules:   []int{},
	}
}

func withRules(v rollout.VersionStatus, rules ...int) rollout.VersionStatus {
	v.Rules = rules
	return v
}

func TestGoldenStatus(t *testing.T) {
	golden(t, "status_canary", Status(canaryStatus()))
	golden(t, "status_failed", Status(failedStatus()))
	golden(t, "status_empty", Status(rollout.ServiceStatus{Name: "api", URL: "http://api.localtest.me:8080/"}))
}

func TestGoldenPrediction(t *testing.T) {
	cases := []struct {
		title string
		p     rollout.Prediction
	}{
		{"rule", rollout.Prediction{Query: "env=beta2&region=eu", Version: "hello-004", Rule: 1,
			Match: map[string]string{"env": "beta*"}, Reason: "rule 1 matched (env=beta*)"}},
		{"second rule", rollout.Prediction{Query: "user=alice&region=eu", Version: "hello-004", Rule: 2,
			Match: map[string]string{"user": "{alice,bob}", "region": "eu"}}},
		{"third rule", rollout.Prediction{Query: "x=1", Version: "hello-005", Rule: 3, Match: map[string]string{"x": "?"}}},
		{"random split", rollout.Prediction{Query: "env=prod",
			Split:  []rollout.Share{{Version: "hello-003", Percent: 90}, {Version: "hello-004", Percent: 10}},
			Reason: "no rule matched; split: random among hello-003 90%, hello-004 10%"}},
		{"single version", rollout.Prediction{Query: "env", Version: "hello-003",
			Split: []rollout.Share{{Version: "hello-003", Percent: 100}}}},
		{"no version", rollout.Prediction{Query: "",
			Reason: "no rule matched and the split is empty: the service has no version taking traffic"}},
	}
	var b strings.Builder
	for _, c := range cases {
		b.WriteString("<!-- " + c.title + " -->\n" + Prediction("hello", c.p) + "\n")
	}
	golden(t, "prediction", b.String())
}

func TestGoldenRefusalAndProblem(t *testing.T) {
	var b strings.Builder
	b.WriteString(Refusal("alice", "read") + "\n")
	b.WriteString(Refusal("dependabot-preview", "") + "\n")
	for _, r := range command.Parse("/canary 110%\n  /route env=beta region=eu\n/rollback hello hello-003\n/predict\n/deploy `x`") {
		b.WriteString(Problem(r) + "\n")
	}
	golden(t, "refusal_problem", b.String())
}

func TestGoldenSticky(t *testing.T) {
	st := canaryStatus()
	entries := []Entry{
		{Time: t0, Title: "`/deploy` by @alice", OK: true,
			Body: "Deployed `hello-004` at 0%: http://hello-004.hello.localtest.me:8080/"},
		{Time: t0.Add(time.Minute), Title: "`/canary 10%` by @alice", OK: true, Body: Status(st)},
		{Time: t0.Add(2 * time.Minute), Title: "`/canary 110%` by @bob", OK: false,
			Body: Problem(command.Parse("/canary 110%")[0])},
		{Time: t0.Add(3 * time.Minute), Title: "`/predict env=beta` by @alice", OK: true,
			Body: Prediction("hello", rollout.Prediction{Query: "env=beta", Version: "hello-004", Rule: 1, Match: map[string]string{"env": "beta*"}})},
		{Time: t0.Add(4 * time.Minute), Title: "`/promote` by @carol", OK: false, Body: Refusal("carol", "triage")},
		{Time: t0.Add(5 * time.Minute), Title: "Deploy of `hello-005` failed", OK: false,
			Body: Failure("hello-005", failedStatus().Versions[2].Reason)},
	}
	golden(t, "sticky", Sticky(entries, 4))
	golden(t, "sticky_help", Sticky([]Entry{{Time: t0, Title: "`/help`", OK: true, Body: HelpText()}}, 10))
}

func TestGoldenCheckOutput(t *testing.T) {
	all := []Step{{Name: StepCheckout, Done: true}, {Name: StepBuild, Done: true}, {Name: StepStart, Done: true}, {Name: StepHealth, Done: true}}
	normal := vs("hello-004", 4, rollout.StatusNormal, 100)
	normal.CreatedBy = rollout.Origin{Via: "merge", Actor: "alice", PR: 12, Ref: "0123456789abcdef0123456789abcdef01234567"}

	creating := vs("hello-005", 5, rollout.StatusCreating, 0)
	creating.CreatedBy = rollout.Origin{Via: "comment", Actor: "bob", PR: 13}
	running := []Step{{Name: StepCheckout, Done: true}, {Name: StepBuild}, {Name: StepStart}, {Name: StepHealth}}

	failed := vs("hello-006", 6, rollout.StatusFailed, 0)
	failed.Reason = rollout.Reason{Code: "BuildFailed", Detail: buildDetail,
		Suggestion: "Fix the build error shown in the log, push, and comment `/deploy` again."}
	failedSteps := []Step{{Name: StepCheckout, Done: true}, {Name: StepBuild, Failed: true}, {Name: StepStart}, {Name: StepHealth}}

	canary := withRules(vs("hello-007", 7, rollout.StatusNormal, 10), 1)

	for name, c := range map[string]struct {
		v     rollout.VersionStatus
		steps []Step
	}{
		"check_normal":   {normal, all},
		"check_creating": {creating, running},
		"check_failed":   {failed, failedSteps},
		"check_canary":   {canary, nil},
	} {
		title, summary, text := CheckOutput(c.v, c.steps)
		golden(t, name, "# title\n"+title+"\n# summary\n"+summary+"# text\n"+text)
	}
}
