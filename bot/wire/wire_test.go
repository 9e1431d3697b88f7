package wire_test

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/bot/wire"
)

func TestPathEscapesEachParameterAsOneSegment(t *testing.T) {
	for _, tc := range []struct {
		route  wire.Route
		params []string
		want   string
	}{
		{wire.ListServices, nil, "/services"},
		{wire.GetService, []string{"hello"}, "/services/hello"},
		{wire.GetVersion, []string{"hello", "hello-001"}, "/services/hello/versions/hello-001"},
		{wire.Logs, []string{"a/b", "c?d"}, "/services/a%2Fb/versions/c%3Fd/logs"},
		{wire.RevokeToken, []string{"t 1"}, "/tokens/t%201"},
	} {
		if got := tc.route.Path(tc.params...); got != tc.want {
			t.Errorf("%s.Path(%q) = %q, want %q", tc.route.Pattern, tc.params, got, tc.want)
		}
	}
}

func TestPathRefusesTheWrongNumberOfParameters(t *testing.T) {
	for _, params := range [][]string{{"hello"}, {"hello", "hello-001", "extra"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("GetVersion.Path(%q) did not panic", params)
				}
			}()
			wire.GetVersion.Path(params...)
		}()
	}
}

func TestRedeployQueryRoundTrips(t *testing.T) {
	n, run := 3, ""
	in := wire.RedeployBody{Env: map[string]string{"A": "1=2", "B": ""}, UnsetEnv: []string{"C"}, Instances: &n, Run: &run}
	out, err := wire.ParseRedeployQuery(in.Query())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	empty, err := wire.ParseRedeployQuery(url.Values{})
	if err != nil || !reflect.DeepEqual(empty, wire.RedeployBody{}) {
		t.Fatalf("no parameters: got %+v, %v; want the zero body", empty, err)
	}
}

func TestParseRedeployQueryNamesTheBadParameter(t *testing.T) {
	for q, want := range map[string]string{
		"env=NOVALUE":    `env must be KEY=VALUE, got "NOVALUE"`,
		"instances=many": `instances must be a whole number, got "many"`,
	} {
		v, _ := url.ParseQuery(q)
		if _, err := wire.ParseRedeployQuery(v); err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", q, err, want)
		}
	}
}
