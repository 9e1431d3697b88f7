// Package bot is sluice's GitHub front door: the webhook receiver, the
// PR-comment commands, merge deploys, and everything sluice reports back
// (reactions, the sticky comment, check runs, deployments).
//
// Work flows one way and survives restarts:
//
//	webhook ─verify─▶ journal "inbox" ─worker─▶ handler ─▶ engine
//	engine event log ─watcher─▶ journal "outbox" ─sender─▶ GitHub
//
// A delivery is verified before it is parsed, recorded once (by its
// X-GitHub-Delivery id) and answered at once; a worker then handles it
// from the journal. Reports are never sent from a handler: they are
// appended to the outbox in the same transaction that settles the work
// which caused them, and a sender delivers them in order, retrying with
// backoff (honouring Retry-After and rate-limit resets) and never holding
// up a traffic change. Check runs and the sticky comment are rendered from
// the current state when sent, and found again before being created, so a
// retry never doubles them.
//
// Deliveries keep their order only within a lane — one pull request, or
// one ref for pushes — and lanes are handled side by side, so a delivery
// that waits for a retry holds up nothing else. GitHub's 4xx answers
// (but 408, 429 and rate limits) are final (ghapp.Permanent, the rule the
// outbox uses too): the delivery ends with a reply on its pull request
// saying why. A handler that panics fails its delivery the same way. The
// same signed body re-sent under a new delivery id is recognised by what
// it asks for (a comment's id and edit time; a push's repository, ref and
// commits) and runs nothing again. Those records are pruned past a
// horizon (Prune), and an event older than it by its own time is ignored
// on arrival, so pruning never lets a replay through.
//
// A delivery is settled (removed from the inbox, its reports queued) in one
// transaction after its commands ran; a crash in between runs them again
// on restart, which every command tolerates: /deploy and /canary reuse the
// version already made from the same head, and policy changes are
// replacements, not increments.
//
// Bot is a facade over four parts sharing one core: the inbox (webhook,
// replay records, dispatch by lane, missed-webhook recovery; inbox.go,
// webhook.go, horizon.go, recover.go), the commands (the event handlers,
// which adapt an event and call the engine; comment.go, runners.go,
// events.go, fork.go), the reporter (the outbox and everything written on
// GitHub, with the redaction set it needs; report.go, checks.go,
// secrets.go) and the watcher (the engine's history turned into reports;
// watcher.go).
//
// Subpackages: command (the pure comment grammar), render (markdown),
// ghapp (the only place a *github.Client is built) and githubtest (a strict
// fake GitHub for tests). The bot imports rollout and these; it must not
// import the store, the runtime drivers or the router.
package bot
