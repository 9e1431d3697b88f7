package command

import (
	"reflect"
	"strings"
	"testing"
)

// want is one expected Result: either cmd (a valid command) or a Reply for
// name whose Problem contains problem.
type want struct {
	line    int
	cmd     *Command
	name    Name
	problem string
}

func ok(line int, c Command) want { return want{line: line, cmd: &c} }

func bad(line int, n Name, problem string) want { return want{line: line, name: n, problem: problem} }

var parseCases = []struct {
	name string
	body string
	want []want
}{
	// Each command, valid.
	{"deploy", "/deploy", []want{ok(1, Command{Name: NameDeploy})}},
	{"deploy service", "/deploy hello", []want{ok(1, Command{Name: NameDeploy, Service: "hello"})}},
	{"deploy three spaces", "   /deploy hello", []want{ok(1, Command{Name: NameDeploy, Service: "hello"})}},
	{"deploy trailing spaces", "/deploy hello   \t", []want{ok(1, Command{Name: NameDeploy, Service: "hello"})}},
	{"deploy tab between", "/deploy\thello", []want{ok(1, Command{Name: NameDeploy, Service: "hello"})}},
	{"deploy many spaces between", "/deploy     my-api2", []want{ok(1, Command{Name: NameDeploy, Service: "my-api2"})}},
	{"canary", "/canary 10%", []want{ok(1, Command{Name: NameCanary, Percent: 10})}},
	{"canary zero", "/canary 0%", []want{ok(1, Command{Name: NameCanary, Percent: 0})}},
	{"canary hundred service", "/canary 100% api", []want{ok(1, Command{Name: NameCanary, Percent: 100, Service: "api"})}},
	{"canary leading zero", "/canary 007%", []want{ok(1, Command{Name: NameCanary, Percent: 7})}},
	{"route", "/route env=beta", []want{ok(1, Command{Name: NameRoute, Match: map[string]string{"env": "beta"}})}},
	{"route two conditions and service", "/route env=beta*&region=eu api",
		[]want{ok(1, Command{Name: NameRoute, Service: "api", Match: map[string]string{"env": "beta*", "region": "eu"}})}},
	{"route leading question mark", "/route ?env=beta", []want{ok(1, Command{Name: NameRoute, Match: map[string]string{"env": "beta"}})}},
	{"route empty glob", "/route env=", []want{ok(1, Command{Name: NameRoute, Match: map[string]string{"env": ""}})}},
	{"route glob classes", "/route user={alice,bob}&id=[0-9]?", []want{ok(1, Command{Name: NameRoute, Match: map[string]string{"user": "{alice,bob}", "id": "[0-9]?"}})}},
	{"unroute", "/unroute", []want{ok(1, Command{Name: NameUnroute})}},
	{"unroute service", "/unroute hello", []want{ok(1, Command{Name: NameUnroute, Service: "hello"})}},
	{"promote", "/promote", []want{ok(1, Command{Name: NamePromote})}},
	{"promote service", "/promote hello", []want{ok(1, Command{Name: NamePromote, Service: "hello"})}},
	{"rollback", "/rollback", []want{ok(1, Command{Name: NameRollback})}},
	{"rollback version", "/rollback hello-003", []want{ok(1, Command{Name: NameRollback, Version: "hello-003"})}},
	{"rollback service", "/rollback hello", []want{ok(1, Command{Name: NameRollback, Service: "hello"})}},
	{"rollback service with digits", "/rollback api-12", []want{ok(1, Command{Name: NameRollback, Service: "api-12"})}},
	{"rollback version and service", "/rollback hello-003 hello", []want{ok(1, Command{Name: NameRollback, Version: "hello-003", Service: "hello"})}},
	{"rollback hyphenated service", "/rollback my-api-0042 my-api", []want{ok(1, Command{Name: NameRollback, Version: "my-api-0042", Service: "my-api"})}},
	{"abort", "/abort", []want{ok(1, Command{Name: NameAbort})}},
	{"abort service", "/abort hello", []want{ok(1, Command{Name: NameAbort, Service: "hello"})}},
	{"redeploy", "/redeploy", []want{ok(1, Command{Name: NameRedeploy})}},
	{"redeploy service", "/redeploy hello", []want{ok(1, Command{Name: NameRedeploy, Service: "hello"})}},
	{"status", "/status", []want{ok(1, Command{Name: NameStatus})}},
	{"status service", "/status hello", []want{ok(1, Command{Name: NameStatus, Service: "hello"})}},
	{"predict", "/predict env=beta&region=eu", []want{ok(1, Command{Name: NamePredict, Query: "env=beta&region=eu"})}},
	{"predict question mark", "/predict ?env", []want{ok(1, Command{Name: NamePredict, Query: "env"})}},
	{"predict empty value and service", "/predict env hello", []want{ok(1, Command{Name: NamePredict, Query: "env", Service: "hello"})}},
	{"predict raw escapes kept", "/predict name=a%20b&x=%zz", []want{ok(1, Command{Name: NamePredict, Query: "name=a%20b&x=%zz"})}},
	{"help", "/help", []want{ok(1, Command{Name: NameHelp})}},

	// Each command, malformed.
	{"canary missing", "/canary", []want{bad(1, NameCanary, "percentage is missing")}},
	{"canary word", "/canary ten", []want{bad(1, NameCanary, `"ten" is not a percentage`)}},
	{"canary too big", "/canary 110%", []want{bad(1, NameCanary, "110% is more than 100%")}},
	{"canary huge", "/canary 99999999999999999999999%", []want{bad(1, NameCanary, "more than 100%")}},
	{"canary negative", "/canary -5%", []want{bad(1, NameCanary, "-5% is negative")}},
	{"canary fraction", "/canary 10.5%", []want{bad(1, NameCanary, "10.5% is not a whole number")}},
	{"canary no percent sign", "/canary 10", []want{bad(1, NameCanary, `"10" lacks the % sign; write 10%`)}},
	{"canary bare percent", "/canary %", []want{bad(1, NameCanary, `"%" is not a percentage`)}},
	{"canary plus sign", "/canary +5%", []want{bad(1, NameCanary, `"+5%" is not a percentage`)}},
	{"canary service first", "/canary hello 10%", []want{bad(1, NameCanary, "the percentage comes first")}},
	{"canary bad service", "/canary 10% Hello", []want{bad(1, NameCanary, `"Hello" is not a service name`)}},
	{"canary extra", "/canary 10% hello now", []want{bad(1, NameCanary, `Unexpected argument "now"`)}},
	{"route missing", "/route", []want{bad(1, NameRoute, "match is missing")}},
	{"route only question mark", "/route ?", []want{bad(1, NameRoute, "Empty match")}},
	{"route no equals", "/route env", []want{bad(1, NameRoute, `"env" has no '='`)}},
	{"route empty key", "/route =beta", []want{bad(1, NameRoute, "empty key")}},
	{"route duplicate key", "/route env=a&env=b", []want{bad(1, NameRoute, `Key "env" appears more than once`)}},
	{"route empty condition", "/route env=beta&&region=eu", []want{bad(1, NameRoute, "Empty condition")}},
	{"route invalid glob", "/route env=[", []want{bad(1, NameRoute, `Invalid glob "["`)}},
	{"route range and list", "/route env=[a-z0-9]", []want{bad(1, NameRoute, `Invalid glob "[a-z0-9]"`)}},
	{"route space separated conditions", "/route env=beta region=eu", []want{bad(1, NameRoute, "join conditions with '&'")}},
	{"route bad service", "/route env=beta API", []want{bad(1, NameRoute, `"API" is not a service name`)}},
	{"route extra", "/route env=beta api x", []want{bad(1, NameRoute, `Unexpected argument "x"`)}},
	{"predict missing", "/predict", []want{bad(1, NamePredict, "query is missing")}},
	{"predict only question mark", "/predict ?", []want{bad(1, NamePredict, "query is missing")}},
	{"predict space separated", "/predict a=1 b=2", []want{bad(1, NamePredict, "join conditions with '&'")}},
	{"predict extra", "/predict a=1 api b c", []want{bad(1, NamePredict, `Unexpected arguments "b" "c"`)}},
	{"rollback order", "/rollback hello hello-003", []want{bad(1, NameRollback, "The version comes before the service: /rollback hello-003 hello")}},
	{"rollback other service", "/rollback hello-003 world", []want{bad(1, NameRollback, `"hello-003" is not a version of "world"`)}},
	{"rollback two non-versions", "/rollback foo bar", []want{bad(1, NameRollback, `"foo" is not a version name`)}},
	{"rollback bad name", "/rollback Hello", []want{bad(1, NameRollback, `"Hello" is not a service name`)}},
	{"rollback extra", "/rollback hello-003 hello x", []want{bad(1, NameRollback, `Unexpected argument "x"`)}},
	{"deploy extra", "/deploy a b", []want{bad(1, NameDeploy, `Unexpected argument "b"`)}},
	{"deploy uppercase service", "/deploy Hello", []want{bad(1, NameDeploy, `"Hello" is not a service name`)}},
	{"deploy dash first", "/deploy -x", []want{bad(1, NameDeploy, "not a service name")}},
	{"deploy dash last", "/deploy hello-", []want{bad(1, NameDeploy, "not a service name")}},
	{"deploy digit first", "/deploy 1hello", []want{bad(1, NameDeploy, "not a service name")}},
	{"deploy underscore", "/deploy hello_world", []want{bad(1, NameDeploy, "not a service name")}},
	// The same limit as sluice.yaml's: a name the manifest refuses is refused here too.
	{"deploy too long", "/deploy " + strings.Repeat("a", 41), []want{bad(1, NameDeploy, "longer than 40 characters")}},
	{"deploy 40 is fine", "/deploy " + strings.Repeat("a", 40), []want{ok(1, Command{Name: NameDeploy, Service: strings.Repeat("a", 40)})}},
	{"unroute extra", "/unroute a b", []want{bad(1, NameUnroute, "Unexpected")}},
	{"promote extra", "/promote a b", []want{bad(1, NamePromote, "Unexpected")}},
	{"abort bad service", "/abort a.b", []want{bad(1, NameAbort, "not a service name")}},
	{"redeploy extra", "/redeploy a b", []want{bad(1, NameRedeploy, "Unexpected")}},
	{"status bad service", "/status hello/world", []want{bad(1, NameStatus, "not a service name")}},
	{"help with argument", "/help canary", []want{bad(1, NameHelp, `Unexpected argument "canary"`)}},

	// Not commands at all.
	{"empty", "", nil},
	{"prose", "Looks good to me!\nShip it.", nil},
	{"unknown lgtm", "/lgtm", nil},
	{"unknown cc", "/cc @alice", nil},
	{"path", "/usr/bin/env", nil},
	{"capitalised", "/Deploy", nil},
	{"upper case", "/DEPLOY hello", nil},
	{"longer word", "/deploying hello", nil},
	{"punctuation glued", "/deploy, please", nil},
	{"space after slash", "/ deploy", nil},
	{"bare slash", "/", nil},
	{"url", "https://example.com/deploy", nil},
	{"mid line", "please /deploy hello", nil},
	{"inline code", "`/canary 10%`", nil},
	{"inline code in prose", "run `/deploy` when ready", nil},
	{"list item", "- /deploy", nil},

	// Code blocks.
	{"fence", "```\n/deploy\n```", nil},
	{"fence info string", "```sh\n/deploy\n```\n/status", []want{ok(4, Command{Name: NameStatus})}},
	{"tilde fence", "~~~\n/deploy\n~~~\n/help", []want{ok(4, Command{Name: NameHelp})}},
	{"indented fences", "   ```\n/deploy\n   ```\n/status", []want{ok(4, Command{Name: NameStatus})}},
	{"unclosed fence", "```\n/deploy\n/status", nil},
	{"short close does not close", "````\n```\n/deploy\n````\n/help", []want{ok(5, Command{Name: NameHelp})}},
	{"other char does not close", "~~~\n```\n/deploy\n~~~\n/help", []want{ok(5, Command{Name: NameHelp})}},
	{"close with text does not close", "```\n``` x\n/deploy\n```\n/help", []want{ok(5, Command{Name: NameHelp})}},
	{"inline triple backticks", "```x```\n/deploy", []want{ok(2, Command{Name: NameDeploy})}},
	{"four-space fence is code", "    ```\n/deploy", []want{ok(2, Command{Name: NameDeploy})}},
	{"fence in list item", "- ```\n  /deploy\n  ```\n/help", []want{ok(4, Command{Name: NameHelp})}},
	{"indented four spaces", "    /deploy", nil},
	{"indented tab", "\t/deploy", nil},
	{"indented spaces and tab", "  \t/deploy", nil},
	{"indented after blank", "text\n\n    /deploy\n/status", []want{ok(4, Command{Name: NameStatus})}},

	// Quotes and HTML comments.
	{"quote", "> /deploy", nil},
	{"quote no space", ">/deploy", nil},
	{"indented quote", "   > /deploy", nil},
	{"nested quote", ">> /deploy\n> > /status", nil},
	{"lazy continuation", "> you said\n/deploy", nil},
	{"quote then blank", "> you said\n\n/deploy", []want{ok(3, Command{Name: NameDeploy})}},
	{"quote reply", "> @bob wrote:\n> /canary 10%\n\n/canary 20%",
		[]want{ok(4, Command{Name: NameCanary, Percent: 20})}},
	{"quoted fence then text", "> ```\n/deploy", []want{ok(2, Command{Name: NameDeploy})}},
	{"quoted closed fence then text", "> ```\n> x\n> ```\n/deploy", []want{ok(4, Command{Name: NameDeploy})}},
	{"quoted heading then text", "> # Title\n/deploy", []want{ok(2, Command{Name: NameDeploy})}},
	{"quoted list continues lazily", "> - item\n/deploy", nil},
	{"fence after quote", "> text\n```\n/deploy\n```\n/help", []want{ok(5, Command{Name: NameHelp})}},
	{"html comment block", "<!--\n/deploy\n-->\n/status", []want{ok(4, Command{Name: NameStatus})}},
	{"html comment one line", "<!-- /deploy -->\n/help", []want{ok(2, Command{Name: NameHelp})}},
	{"html comment ends mid line", "<!-- a\n/deploy -->\n/help", []want{ok(3, Command{Name: NameHelp})}},

	// Several commands, order and line endings.
	{"several in order", "/canary 10%\nlooks good\n/route env=beta\n/status", []want{
		ok(1, Command{Name: NameCanary, Percent: 10}),
		ok(3, Command{Name: NameRoute, Match: map[string]string{"env": "beta"}}),
		ok(4, Command{Name: NameStatus}),
	}},
	{"valid and invalid mixed", "/deploy\n/canary 200%\n/lgtm\n/promote", []want{
		ok(1, Command{Name: NameDeploy}),
		bad(2, NameCanary, "200% is more than 100%"),
		ok(4, Command{Name: NamePromote}),
	}},
	{"crlf", "/deploy hello\r\n/canary 10%\r\n", []want{
		ok(1, Command{Name: NameDeploy, Service: "hello"}),
		ok(2, Command{Name: NameCanary, Percent: 10}),
	}},
	{"crlf fence", "```\r\n/deploy\r\n```\r\n/help\r\n", []want{ok(4, Command{Name: NameHelp})}},
	{"crlf quote then blank", "> x\r\n\r\n/abort", []want{ok(3, Command{Name: NameAbort})}},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Parse(tc.body)
			if len(got) != len(tc.want) {
				t.Fatalf("Parse(%q) = %d results %+v, want %d", tc.body, len(got), describe(got), len(tc.want))
			}
			lines := strings.Split(tc.body, "\n")
			for i, w := range tc.want {
				g := got[i]
				if g.Line != w.line {
					t.Errorf("result %d: line %d, want %d", i, g.Line, w.line)
				}
				if wantRaw := strings.TrimSuffix(lines[g.Line-1], "\r"); g.Raw != wantRaw {
					t.Errorf("result %d: raw %q, want %q", i, g.Raw, wantRaw)
				}
				if (g.Command == nil) == (g.Reply == nil) {
					t.Fatalf("result %d: want exactly one of Command and Reply, got %+v", i, g)
				}
				if w.cmd != nil {
					if g.Command == nil {
						t.Fatalf("result %d: got reply %+v, want command %+v", i, *g.Reply, *w.cmd)
					}
					if !reflect.DeepEqual(*g.Command, *w.cmd) {
						t.Errorf("result %d: command %+v, want %+v", i, *g.Command, *w.cmd)
					}
					continue
				}
				if g.Reply == nil {
					t.Fatalf("result %d: got command %+v, want a reply about %q", i, *g.Command, w.problem)
				}
				if g.Reply.Name != string(w.name) || g.Reply.Usage != Usage(w.name) {
					t.Errorf("result %d: reply name %q usage %q, want %q and %q", i, g.Reply.Name, g.Reply.Usage, w.name, Usage(w.name))
				}
				if !strings.Contains(g.Reply.Problem, w.problem) {
					t.Errorf("result %d: problem %q, want it to contain %q", i, g.Reply.Problem, w.problem)
				}
			}
		})
	}
}

func describe(rs []Result) []string {
	var out []string
	for _, r := range rs {
		switch {
		case r.Command != nil:
			out = append(out, "command "+string(r.Command.Name))
		case r.Reply != nil:
			out = append(out, "reply "+r.Reply.Name+": "+r.Reply.Problem)
		}
	}
	return out
}

func TestUsageAndHelp(t *testing.T) {
	names := Names()
	if len(names) != 11 {
		t.Fatalf("Names() has %d names, want 11", len(names))
	}
	help := Help()
	for _, n := range names {
		if !n.Known() {
			t.Errorf("%q is not Known", n)
		}
		u := Usage(n)
		if !strings.HasPrefix(u, "/"+string(n)) || strings.Contains(u, "\n") {
			t.Errorf("Usage(%q) = %q, want one line starting with /%s", n, u, n)
		}
		if !strings.Contains(help, "- `"+u+"` — ") {
			t.Errorf("Help() lacks the usage of %q:\n%s", n, help)
		}
		// Every command is recognised when written alone or, where it
		// takes one, with a service.
		if rs := Parse("/" + string(n)); len(rs) != 1 {
			t.Errorf("Parse(/%s) gave %d results", n, len(rs))
		}
	}
	if Name("lgtm").Known() || Usage("lgtm") != "" {
		t.Error(`"lgtm" is known`)
	}
	names[0] = "changed"
	if Names()[0] != NameDeploy {
		t.Error("Names() returned shared storage")
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		lines := strings.Split(body, "\n")
		last := 0
		for _, r := range Parse(body) {
			if r.Line <= last || r.Line > len(lines) {
				t.Fatalf("line %d out of order or range (previous %d, %d lines)", r.Line, last, len(lines))
			}
			last = r.Line
			if r.Raw != strings.TrimSuffix(lines[r.Line-1], "\r") {
				t.Fatalf("raw %q is not line %d", r.Raw, r.Line)
			}
			if (r.Command == nil) == (r.Reply == nil) {
				t.Fatalf("want exactly one of Command and Reply: %+v", r)
			}
			if c := r.Command; c != nil {
				if !c.Name.Known() || c.Percent < 0 || c.Percent > 100 {
					t.Fatalf("bad command %+v", *c)
				}
				if c.Service != "" && checkService(c.Service) != "" {
					t.Fatalf("bad service in %+v", *c)
				}
				if (c.Name == NameRoute) != (len(c.Match) > 0) || (c.Name == NamePredict) != (c.Query != "") {
					t.Fatalf("arguments of %+v", *c)
				}
			} else if r.Reply.Problem == "" || r.Reply.Usage == "" {
				t.Fatalf("incomplete reply %+v", *r.Reply)
			}
		}
	})
}
