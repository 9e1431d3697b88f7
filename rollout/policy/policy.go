package policy

// Policy is a service's traffic policy. It is the persisted and API shape:
//
//	{"rules": [{"version": "hello-002", "match": {"env": "beta*"}}],
//	 "split": {"hello-001": 100}}
type Policy struct {
	// Rules are tried in order; the first whose conditions all match the
	// request's query sends it to its version.
	Rules []Rule `json:"rules"`
	// Split weighs, in whole percent summing to 100, the versions that serve
	// requests no rule matched. Empty only before a service's first version
	// is ready.
	Split map[string]int `json:"split"`
}

// Rule sends requests whose URL query matches every condition to Version.
// Match maps a query key (matched exactly) to a glob (`*`, `?`, `[...]`)
// matched against the key's percent-decoded values; a repeated key matches
// when any value matches; an absent key never matches; `?key` without `=`
// has the value "".
type Rule struct {
	Version string            `json:"version"`
	Match   map[string]string `json:"match"`
}
