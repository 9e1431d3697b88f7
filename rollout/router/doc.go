// Package router is sluice's data path: it turns a service's traffic policy
// into a decision per request and proxies the request to an instance of the
// chosen version.
//
// It owns the policy's persisted shape (Policy, Rule), its validation and
// compilation (Validate, Compile, ParseMatch, FormatMatch), the one decision
// function (Compiled.Decide) and the reverse proxy (Router). It imports only
// the standard library and github.com/gobwas/glob; it must not import
// rollout, store, the runtimes or any front door (bot, api, dashboard):
// rollout drives it, never the other way round.
//
// # Policies
//
// Rules are tried in order; the first whose conditions all match wins. A
// condition is key=glob: the query key is compared exactly (after
// unescaping), the glob is matched against the key's unescaped value
// (url.QueryUnescape semantics: '+' is a space, "%41" is "A"; a value with an
// invalid escape such as "%zz" is matched as written). A repeated key
// matches if any of its values does; an absent key never matches, not even
// "*"; "?env" with no '=' has the value "". Requests no rule matches are
// split at random by whole-percent weights that sum to 100.
//
// Globs are github.com/gobwas/glob patterns compiled without separators, so
// '*' matches any run of characters, '/' and '.' included:
//
//   - any run of characters, possibly empty (** is the same)
//     ?        exactly one character (a UTF-8 rune)
//     [abc]    one of the listed characters; [!abc] any other one
//     [a-z]    one character in the range; [!a-z] any other one
//     {a,b*}   any of the comma-separated alternatives
//     \c       the character c itself, e.g. \* or \{
//
// A class is either one range or a list, not both: [a-z0-9] is rejected
// (write {[a-z],[0-9]}), and '-' inside a list is a literal. Globs match the
// whole value: "beta" does not match "beta2"; "beta*" does.
//
// # The table and the request path
//
// Router serves a Table: services, their compiled policies and the live
// addresses of each version. Update builds the lookup maps from it once and
// publishes them with an atomic pointer swap; the request path loads that
// pointer, never takes a lock and never compiles anything. A request to
// <service>.<base> asks the service's Compiled.Decide for a version; a
// request to <version>.<service>.<base> goes to that version only. Instances
// are picked round-robin with an atomic counter, and the request is proxied
// by httputil.ReverseProxy (Rewrite, one shared tuned Transport, streaming
// flushes). The predict operation calls the same Decide, so what it says is
// what the proxy does.
//
// Each instance address has a backend that outlives table swaps and counts
// the requests in flight to it. A request counts itself, then checks that the
// table it routed on is still current and otherwise routes again; so once an
// Update has removed an address, Drain can wait for that count to reach zero
// knowing no new request will raise it again. That is what lets a switch
// happen with no request failing: old instances are stopped only after
// Drain.
package router
