// Package policy is the vocabulary of a service's traffic policy: its
// persisted shape (Policy, Rule), its validation (Policy.Validate), the
// textual match syntax of rules (ParseMatch, FormatMatch), the compiled
// form the data path evaluates (Compile, Compiled) and the one decision
// function (Compiled.Decide) that both the router and the predict
// operation call, so the two cannot disagree.
//
// It is a leaf: it imports the standard library and github.com/gobwas/glob
// only, never another sluice package, Prometheus or an HTTP server, so the
// comment grammar, the store, the CLI and the reports can speak of
// policies without depending on the data path.
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
//	glob     matches
//	*        any run of characters, possibly empty (** is the same)
//	?        exactly one character (a UTF-8 rune)
//	[abc]    one of the listed characters; [!abc] any other one
//	[a-z]    one character in the range; [!a-z] any other one
//	{a,b*}   any of the comma-separated alternatives
//	\c       the character c itself, e.g. \* or \{
//
// A class is either one range or a list, not both: [a-z0-9] is rejected
// (write {[a-z],[0-9]}), and '-' inside a list is a literal. Globs match the
// whole value: "beta" does not match "beta2"; "beta*" does.
package policy
