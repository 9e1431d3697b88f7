package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot/cli"
	"github.com/sluicehq/sluice/internal/apitest"
	"github.com/sluicehq/sluice/rollout"
)

type command interface{ Run(*cli.Env) error }

// run runs cmd as main does and returns what it printed.
func run(cmd command) (stdout, stderr string, err error) {
	var out, errs bytes.Buffer
	err = cmd.Run(&cli.Env{Ctx: context.Background(), Stdout: &out, Stderr: &errs})
	return out.String(), errs.String(), err
}

// ok runs cmd and fails the test if it fails.
func ok(t *testing.T, cmd command) string {
	t.Helper()
	out, _, err := run(cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return out
}

func contains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s printed %q; it should say %q", what, out, w)
		}
	}
}

// TestCommandsTakeAServiceThroughItsLife runs each client command against
// the real API and checks what it prints.
func TestCommandsTakeAServiceThroughItsLife(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	f := cli.ClientFlags{Server: srv.URL, Token: apitest.AdminToken}
	js := f
	js.JSON = true

	if out := ok(t, &cli.DeployCmd{ClientFlags: f, Service: "web", Source: apitest.AppDir(t, "web", apitest.Serve), Strategy: "full", Wait: true, Timeout: 5 * time.Minute}); out != "web-001\n" {
		t.Fatalf("deploy --wait printed %q, want the version's name", out)
	}
	out := ok(t, &cli.DeployCmd{ClientFlags: js, Service: "web", Source: apitest.AppDir(t, "web", apitest.Serve), Strategy: "canary", Wait: true, Timeout: 5 * time.Minute})
	var v rollout.VersionStatus
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != "web-002" || v.Status != rollout.StatusNormal || v.URL == "" {
		t.Fatalf("deploy --json --wait printed %q (%v); want web-002's JSON, normal", out, err)
	}

	out = ok(t, &cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001=90", "web-002=10%"}})
	if !regexp.MustCompile(`web-001 +normal +90% ██████████████████··`).MatchString(out) || !regexp.MustCompile(`web-002 +normal +10% ██················`).MatchString(out) {
		t.Fatalf("traffic printed:\n%s\nwant a bar per version", out)
	}
	contains(t, "traffic", out, "web  http://", "(stable: web-001)")
	contains(t, "route", ok(t, &cli.RouteCmd{ClientFlags: f, Service: "web", Version: "web-002", Match: "env=beta*"}),
		"+rule 1", "rule 1: env=beta* -> web-002")
	if out := ok(t, &cli.PredictCmd{ClientFlags: f, Service: "web", Query: "env=beta2"}); !strings.HasPrefix(out, "web-002\t") {
		t.Fatalf("predict env=beta2 printed %q", out)
	}
	if out := ok(t, &cli.PredictCmd{ClientFlags: f, Service: "web", Query: "env=prod"}); !strings.HasPrefix(out, "(random)\t") {
		t.Fatalf("predict env=prod printed %q", out)
	}
	if out := ok(t, &cli.RouteCmd{ClientFlags: f, Service: "web", Version: "web-002", Clear: true}); strings.Contains(out, "rule") {
		t.Fatalf("route --clear printed %q: a rule is left", out)
	}
	contains(t, "promote", ok(t, &cli.PromoteCmd{ClientFlags: f, Service: "web", Version: "web-002"}), "(stable: web-002)")
	contains(t, "rollback", ok(t, &cli.RollbackCmd{ClientFlags: f, Service: "web"}), "(stable: web-001)")
	ok(t, &cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001=50", "web-002=50"}})
	if out := ok(t, &cli.AbortCmd{ClientFlags: f, Service: "web", Version: "web-002"}); !regexp.MustCompile(`web-002 +normal +0% `).MatchString(out) {
		t.Fatalf("abort printed:\n%s\nwant web-002 at 0%%", out)
	}
	if out := ok(t, &cli.RedeployCmd{ClientFlags: f, Service: "web", Version: "web-001", Env: map[string]string{"GREETING": "hello"}, Wait: true, Timeout: 5 * time.Minute}); out != "web-001 normal\n" {
		t.Fatalf("redeploy --wait printed %q", out)
	}
	if out := ok(t, &cli.RedeployCmd{ClientFlags: f, Service: "web", Version: "web-002", Source: apitest.AppDir(t, "web", apitest.Serve), Instances: 2, Wait: true, Timeout: 5 * time.Minute}); out != "web-002 normal\n" {
		t.Fatalf("redeploy --source --wait printed %q", out)
	}
	st, err := srv.World.Engine.Status(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if st.Versions[0].Config.Env["GREETING"] != "hello" || st.Versions[1].Config.Instances != 2 {
		t.Fatalf("after the redeploys: %+v / %+v", st.Versions[0].Config, st.Versions[1].Config)
	}

	var status rollout.ServiceStatus
	if err := json.Unmarshal([]byte(ok(t, &cli.StatusCmd{ClientFlags: js, Service: "web"})), &status); err != nil || status.Name != "web" || status.Stable != "web-001" {
		t.Fatalf("status --json: %+v, %v", status, err)
	}
	contains(t, "status", ok(t, &cli.StatusCmd{ClientFlags: f, Service: "web"}), "(stable: web-001)", "web-002")
	if out := ok(t, &cli.ServicesCmd{ClientFlags: f}); !regexp.MustCompile(`^web +web-001 +2 versions +http://`).MatchString(out) {
		t.Fatalf("services printed %q", out)
	}
	contains(t, "logs", ok(t, &cli.LogsCmd{ClientFlags: f, Service: "web", Version: "web-001", Bytes: 4096}), "serving web-001")
	var logs map[string]string
	if err := json.Unmarshal([]byte(ok(t, &cli.LogsCmd{ClientFlags: js, Service: "web", Version: "web-001", Bytes: 4096})), &logs); err != nil ||
		logs["service"] != "web" || logs["version"] != "web-001" || !strings.Contains(logs["logs"], "serving") {
		t.Fatalf("logs --json: %v, %v", logs, err)
	}

	idle := time.Duration(0)
	if out := ok(t, &cli.RetireCmd{ClientFlags: f, Service: "web", OlderThan: &idle}); out != "stopped web-002\n" {
		t.Fatalf("retire --older-than 0s printed %q", out)
	}
	if out := ok(t, &cli.RetireCmd{ClientFlags: f, Service: "web", OlderThan: &idle}); out != "nothing to retire\n" {
		t.Fatalf("a second retire printed %q", out)
	}

	hist, hint, err := run(&cli.HistoryCmd{ClientFlags: f, Service: "web", Limit: 3})
	if err != nil || strings.Count(hist, "\n") != 3 || !strings.Contains(hint, "sluice history web --before ") {
		t.Fatalf("history --limit 3: %q, %q, %v", hist, hint, err)
	}
	zero := uint64(0)
	hist = ok(t, &cli.HistoryCmd{ClientFlags: f, Service: "web", Limit: 1, After: &zero})
	if !regexp.MustCompile(`^ +1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d deploy +cli`).MatchString(hist) {
		t.Fatalf("history --after 0 --limit 1 printed %q, want the first deploy, by the cli", hist)
	}
}

// TestAFailedDeployExitsWithItsReason: --wait turns a failed version into
// an error naming the reason, and version rm deletes its record.
func TestAFailedDeployExitsWithItsReason(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	f := cli.ClientFlags{Server: srv.URL, Token: apitest.AdminToken}
	out, _, err := run(&cli.DeployCmd{ClientFlags: f, Service: "web", Source: apitest.AppDir(t, "web", apitest.Exit), Strategy: "full", Wait: true, Timeout: 5 * time.Minute})
	if out != "web-001\n" || err == nil || !strings.HasPrefix(err.Error(), "web-001 is failed: ") || !strings.Contains(err.Error(), "cannot open config file") {
		t.Fatalf("deploy --wait of a failing app: printed %q, error %v", out, err)
	}
	contains(t, "status", ok(t, &cli.StatusCmd{ClientFlags: f, Service: "web"}), "web-001: ", "| fatal: cannot open config file app.conf", "suggestion: ")

	_, _, err = run(&cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001=100"}})
	var body struct {
		Error struct{ Code, Message string }
	}
	if err == nil || json.Unmarshal(cli.ErrorJSON(err), &body) != nil || body.Error.Code != "version_not_normal" || body.Error.Message != err.Error() {
		t.Fatalf("traffic to a failed version: %v; --json reports %+v", err, body)
	}
	if out := ok(t, &cli.VersionRmCmd{ClientFlags: f, Service: "web", Version: "web-001"}); out != "deleted web-001\n" {
		t.Fatalf("version rm printed %q", out)
	}
	if _, _, err := run(&cli.VersionRmCmd{ClientFlags: f, Service: "web", Version: "web-001"}); err == nil || !strings.Contains(err.Error(), "web-001") {
		t.Fatalf("a second version rm: %v, want an error naming the version", err)
	}
}

// TestTokensAndOwnersAreManagedFromTheCLI: token create prints the token
// alone on stdout; list and revoke name it; set-repo assigns a service.
func TestTokensAndOwnersAreManagedFromTheCLI(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	f := cli.ClientFlags{Server: srv.URL, Token: apitest.AdminToken}
	out, details, err := run(&cli.TokenCreateCmd{ClientFlags: f, Repo: "acme/web", Service: "web", Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	id := regexp.MustCompile(`^token (\S+) for acme/web service web, expires `).FindStringSubmatch(details)
	if strings.Count(out, "\n") != 1 || token == "" || id == nil {
		t.Fatalf("token create printed %q and %q", out, details)
	}
	p, err := srv.Auth.Authenticate(context.Background(), token)
	if err != nil || p.Repo != "acme/web" || p.Service != "web" {
		t.Fatalf("the printed token authenticates as %+v, %v", p, err)
	}
	contains(t, "token list", ok(t, &cli.TokenListCmd{ClientFlags: f}), "ID", id[1]+"  acme/web  web")
	contains(t, "token revoke", ok(t, &cli.TokenRevokeCmd{ClientFlags: f, ID: id[1]}), "revoked "+id[1]+" (acme/web service web) at ")
	if _, err := srv.Auth.Authenticate(context.Background(), token); err == nil {
		t.Fatal("a revoked token still authenticates")
	}

	if out := ok(t, &cli.ServiceSetRepoCmd{ClientFlags: f, Service: "web", Repo: "acme/web"}); out != "web belongs to acme/web\n" {
		t.Fatalf("set-repo printed %q", out)
	}
	if out := ok(t, &cli.ServiceSetRepoCmd{ClientFlags: f, Service: "web", None: true}); out != "web belongs to no repository (the admin only)\n" {
		t.Fatalf("set-repo --none printed %q", out)
	}
	for _, c := range []*cli.ServiceSetRepoCmd{{ClientFlags: f, Service: "web"}, {ClientFlags: f, Service: "web", Repo: "acme/web", None: true}} {
		if _, _, err := run(c); err == nil {
			t.Fatalf("set-repo %q --none=%v: no error", c.Repo, c.None)
		}
	}
}

// TestClientErrorsSayHowToFixThem: a --server that cannot work, the
// router's port and a missing token each get a stable code and a hint.
func TestClientErrorsSayHowToFixThem(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	gone := httptest.NewServer(nil)
	gone.Close()
	for _, tc := range []struct {
		name        string
		flags       cli.ClientFlags
		code, inMsg string
	}{
		{"no scheme", cli.ClientFlags{Server: "127.0.0.1:8080"}, "invalid_server", "--server http://127.0.0.1:8080"},
		{"other scheme", cli.ClientFlags{Server: "ftp://example.com"}, "invalid_server", "http or https"},
		{"router port", cli.ClientFlags{Server: srv.World.Server.URL, Token: apitest.AdminToken}, "router_port", "router port"},
		{"no token", cli.ClientFlags{Server: srv.URL}, "token_required", "--token"},
		{"wrong token", cli.ClientFlags{Server: srv.URL, Token: "wrong"}, "unknown_token", "refused the credential"},
		{"nobody there", cli.ClientFlags{Server: gone.URL}, "error", "cannot reach the sluice server at " + gone.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(&cli.ServicesCmd{ClientFlags: tc.flags})
			var body struct {
				Error struct{ Code, Message string }
			}
			if err == nil || json.Unmarshal(cli.ErrorJSON(err), &body) != nil || body.Error.Code != tc.code || !strings.Contains(err.Error(), tc.inMsg) {
				t.Fatalf("got %v (--json code %q), want code %s mentioning %q", err, body.Error.Code, tc.code, tc.inMsg)
			}
		})
	}
}

// TestBadArgumentsAreRefusedBeforeAnyCall: the server named here does not
// exist, so each of these fails before any request is sent, or not at all.
func TestBadArgumentsAreRefusedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	f := cli.ClientFlags{Server: "http://127.0.0.1:1"}
	after := uint64(3)
	for _, tc := range []struct {
		name  string
		cmd   command
		inMsg string
		usage bool
	}{
		{"weight without =", &cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001"}}, "VERSION=PCT", false},
		{"weight over 100", &cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001=101"}}, "0 to 100", false},
		{"weight twice", &cli.TrafficCmd{ClientFlags: f, Service: "web", Weights: []string{"web-001=50", "web-001=50"}}, "twice", false},
		{"route without match", &cli.RouteCmd{ClientFlags: f, Service: "web", Version: "web-001"}, "usage: sluice route", false},
		{"route bad match", &cli.RouteCmd{ClientFlags: f, Service: "web", Version: "web-001", Match: "env"}, "invalid rule", false},
		{"clear with match", &cli.RouteCmd{ClientFlags: f, Service: "web", Match: "env=x", Clear: true}, "--clear takes no conditions", false},
		{"retire without --older-than", &cli.RetireCmd{ClientFlags: f, Service: "web"}, "--older-than 24h", true},
		{"history limit", &cli.HistoryCmd{ClientFlags: f, Service: "web", Limit: 0}, "--limit", false},
		{"history both ways", &cli.HistoryCmd{ClientFlags: f, Service: "web", Limit: 5, Before: 9, After: &after}, "not both", false},
		{"deploy no directory", &cli.DeployCmd{ClientFlags: f, Service: "web", Source: t.TempDir() + "/nope"}, "nope", false},
		{"deploy no manifest", &cli.DeployCmd{ClientFlags: f, Service: "web", Source: t.TempDir()}, "has no sluice.yaml", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(tc.cmd)
			if err == nil || !strings.Contains(err.Error(), tc.inMsg) || strings.Contains(err.Error(), "cannot reach") || cli.IsUsage(err) != tc.usage {
				t.Fatalf("got %v (usage %v), want an error mentioning %q (usage %v)", err, cli.IsUsage(err), tc.inMsg, tc.usage)
			}
		})
	}
	split, err := cli.ParseWeights([]string{"a-001=90", "a-002=10%"})
	if err != nil || split["a-001"] != 90 || split["a-002"] != 10 || len(split) != 2 {
		t.Fatalf("ParseWeights: %v, %v", split, err)
	}
	if err := cli.Usage(errors.New("x")); !cli.IsUsage(err) || cli.IsUsage(errors.New("x")) {
		t.Fatal("Usage and IsUsage disagree")
	}
}

func TestSizeReadsUnits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1048576": 1 << 20, "64KiB": 64 << 10, "512MiB": 512 << 20} {
		var s cli.Size
		if err := s.UnmarshalText([]byte(in)); err != nil || int64(s) != want {
			t.Fatalf("%s: %d, %v; want %d", in, s, err, want)
		}
	}
	var s cli.Size
	if err := s.UnmarshalText([]byte("lots")); err == nil {
		t.Fatal("lots: no error")
	}
	if got := cli.Size(256 << 20).String(); got != "256MiB" {
		t.Fatalf("String: %q", got)
	}
}
