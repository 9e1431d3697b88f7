package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/policy"
)

// Engine is what the bot needs of the domain.
type Engine interface {
	Services(ctx context.Context) ([]string, error)
	Status(ctx context.Context, service string) (rollout.ServiceStatus, error)
	Deploy(ctx context.Context, req rollout.DeployRequest) (rollout.Version, error)
	Redeploy(ctx context.Context, service, version string, req rollout.RedeployRequest) (rollout.Version, error)
	Traffic(ctx context.Context, service string, req rollout.TrafficRequest, origin rollout.Origin) (rollout.ServiceStatus, error)
	Route(ctx context.Context, service string, rule policy.Rule, origin rollout.Origin) (rollout.ServiceStatus, error)
	ClearRoutes(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Predict(ctx context.Context, service, query string) (rollout.Prediction, error)
	Promote(ctx context.Context, service, version string, keepRules bool, origin rollout.Origin) (rollout.ServiceStatus, error)
	Rollback(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Abort(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	StopVersion(ctx context.Context, service, version string, origin rollout.Origin) error
	Events(ctx context.Context, service string, after uint64, limit int) ([]rollout.Event, error)
	Wait()
}

// Clients hands out GitHub clients; ghapp.Factory is one (per installation
// token), a workflow token is another (the same client for every id).
type Clients interface {
	Installation(id int64) *github.Client
}

// Config configures the bot.
type Config struct {
	// WebhookSecret verifies X-Hub-Signature-256. Required for Register.
	WebhookSecret []byte
	// PublicURL is the base of links sluice puts on GitHub (details_url).
	PublicURL string
	// Secrets are redacted from everything sluice writes on GitHub.
	Secrets []string
	// MaxBody caps a webhook body (default 5 MiB); a longer one
	// gets 413.
	MaxBody int64
	// MaxInflight caps the webhook bodies being read and checked at once
	// (default 8); a delivery beyond it gets 503 at once,
	// before its body is read, so a flood of slow deliveries holds at most
	// MaxInflight × MaxBody bytes.
	MaxInflight int
	// BodyTimeout bounds the reading of one webhook body (default
	// 30 s), so a slow sender holds its slot that long at most.
	BodyTimeout time.Duration
	// Repo, when set ("owner/name"), limits the bot to one repository:
	// engine events of other repositories are not reported. The GitHub
	// Action's event mode sets it, since its token reaches only that one.
	Repo string
}

// Defaults.
const (
	defaultMaxBody     = 5 << 20
	defaultMaxInflight = 8
	defaultBodyTimeout = 30 * time.Second
	maxTarball         = 256 << 20
	stickyEntries      = 20
	retryMin, retryMax = time.Second, 5 * time.Minute
)

// Journal buckets the bot owns.
const (
	bucketSeen      = "gh-deliveries" // delivery id → time accepted
	bucketInbox     = "gh-inbox"      // append: delivery
	bucketOutbox    = "gh-outbox"     // append: outboxItem
	bucketCursor    = "gh-cursor"     // "events" → last engine event seq handled
	bucketPRs       = "gh-prs"        // "owner/repo#N" → prState
	bucketChecks    = "gh-checks"     // version → checkState
	bucketFollowups = "gh-followups"  // version → followup
	bucketMerges    = "gh-merges"     // "owner/repo@sha" → PR number
	bucketIDs       = "gh-ids"        // external key → GitHub object id
	bucketDone      = "gh-done"       // replay key (see replayKey) → doneRecord: the delivery that handled it, when
	bucketFailed    = "gh-failed"     // delivery id → failedDelivery: deliveries that ended without success
	bucketReacted   = "gh-reacted"    // "owner/repo:comment:content" → time the reaction was queued
)

// Bot is the GitHub App front door. Create with New, mount with Register,
// run its loops with Run (or drive them step by step with Sync).
//
// It is a facade over four parts that share one core (the engine, the
// journal, GitHub clients, configuration, log and clock):
//
//   - inbox: receives deliveries, keeps them (replay records, pruning,
//     missed-webhook recovery) and dispatches each to its handler;
//   - commands: the handlers — they adapt an event (a PR comment, a merge,
//     a closed PR, a check run button) and call the engine;
//   - reporter: everything written on GitHub, through the outbox, and
//     the redaction it needs;
//   - watcher: turns the engine's history into reports.
type Bot struct {
	*core
	in    *inbox
	cmds  *commands
	rep   *reporter
	watch *watcher
}

// core is what every part of the bot shares.
type core struct {
	eng     Engine
	journal rollout.Journal
	gh      Clients
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	wake    chan struct{} // a nudge for Run: new work is due
}

// inbox receives and dispatches deliveries.
type inbox struct {
	*core
	cmds *commands
	rep  *reporter

	mu    sync.Mutex // one dispatcher at a time
	lanes lanes      // deliveries being handled, by lane
	// inflight holds a token per webhook body being read and checked.
	inflight chan struct{}

	app          *github.Client // the App itself, for missed-webhook recovery; nil: off
	recoverEvery time.Duration
}

// commands runs what GitHub events ask of the engine.
type commands struct {
	*core
	rep *reporter
}

// reporter writes on GitHub: reactions, the sticky comment, check runs,
// deployments.
type reporter struct {
	*core
	stateMu sync.Mutex // serializes read-modify-write of PR and check state
	outMu   sync.Mutex // one sender at a time
	secrets secretCache
}

// watcher reports the engine's history.
type watcher struct {
	*core
	cmds *commands
	rep  *reporter
}

// Option configures a Bot.
type Option func(*Bot)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(b *Bot) { b.log = l } }

// WithClock sets the time source.
func WithClock(now func() time.Time) Option { return func(b *Bot) { b.now = now } }

// New returns a bot over the engine, the journal and GitHub clients.
func New(eng Engine, j rollout.Journal, gh Clients, cfg Config, opts ...Option) *Bot {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = defaultMaxBody
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = defaultMaxInflight
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = defaultBodyTimeout
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	c := &core{eng: eng, journal: j, gh: gh, cfg: cfg, log: slog.Default(), now: time.Now, wake: make(chan struct{}, 1)}
	rep := &reporter{core: c}
	cmds := &commands{core: c, rep: rep}
	b := &Bot{core: c, rep: rep, cmds: cmds,
		in:    &inbox{core: c, cmds: cmds, rep: rep, inflight: make(chan struct{}, cfg.MaxInflight)},
		watch: &watcher{core: c, cmds: cmds, rep: rep}}
	b.in.lanes.init(maxWorkers)
	for _, o := range opts {
		o(b)
	}
	return b
}

func (c *core) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run handles the inbox, watches the engine's events and sends the outbox
// until ctx ends, and returns once no delivery is being handled. Safe to
// call once.
func (b *Bot) Run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	defer b.in.lanes.wait()
	if b.in.app != nil {
		done := make(chan struct{})
		go func() { defer close(done); b.in.recoverLoop(ctx) }()
		defer func() { <-done }()
	}
	for {
		if err := b.step(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("bot step", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-tick.C:
		}
	}
}

// recoverLoop runs RecoverMissed on start and every recoverEvery; a round
// that panics is logged and the next round runs.
func (in *inbox) recoverLoop(ctx context.Context) {
	tick := time.NewTicker(in.recoverEvery)
	defer tick.Stop()
	for {
		var n int
		err := contain.Do(in.log, "missed-webhook recovery", func() (err error) {
			n, err = in.recoverMissed(ctx)
			return err
		})
		if err != nil && ctx.Err() == nil {
			in.log.Warn("recover missed webhooks", "err", err)
		} else if n > 0 {
			in.log.Info("missed webhooks redelivered", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// step does one round of every loop: handle pending deliveries, turn new
// engine events into reports, send what is due.
func (b *Bot) step(ctx context.Context) error {
	return errors.Join(b.in.processInbox(ctx), b.watch.watchEvents(ctx), b.rep.sendOutbox(ctx))
}

// Sync drives the bot until nothing is left to do: every accepted delivery
// handled, the engine's background work finished, every report sent or
// waiting for a retry. For the GitHub Action's event mode and tests.
func (b *Bot) Sync(ctx context.Context) error {
	for i := 0; ; i++ {
		if err := b.step(ctx); err != nil {
			return err
		}
		b.in.lanes.wait()
		b.eng.Wait()
		if err := b.step(ctx); err != nil {
			return err
		}
		b.in.lanes.wait()
		idle, err := b.idle()
		if err != nil || idle {
			return err
		}
		if i > 200 {
			return fmt.Errorf("bot did not settle")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// idle reports whether every lane of the inbox waits for a retry, no
// follow-up waits, and the outbox holds nothing that is due.
func (b *Bot) idle() (bool, error) {
	in, err := b.journal.List(bucketInbox, inboxScan)
	if err != nil {
		return false, err
	}
	held := map[string]bool{}
	for _, rec := range in {
		var d delivery
		if json.Unmarshal(rec.Value, &d) != nil {
			return false, nil
		}
		lane := readRoute(d).lane(d)
		if held[lane] {
			continue // behind the head of its lane
		}
		held[lane] = true
		if !d.NotBefore.After(b.now()) {
			return false, nil
		}
	}
	fu, err := b.journal.List(bucketFollowups, 1)
	if err != nil {
		return false, err
	}
	out, err := b.journal.List(bucketOutbox, 1)
	if err != nil {
		return false, err
	}
	if len(fu) > 0 {
		return false, nil
	}
	if len(out) == 0 {
		return true, nil
	}
	var it outboxItem
	if json.Unmarshal(out[0].Value, &it) == nil && it.NotBefore.After(b.now()) {
		return true, nil // waiting for a retry: reports arrive later
	}
	return false, nil
}

// Pending names the work the bot has not finished — "the event's
// handling" (accepted deliveries) or "reports to GitHub" (the outbox) —
// or returns "" when there is none. A bot whose journal is thrown away
// afterwards (the Action's event mode) runs until Pending is "".
func (b *Bot) Pending() (string, error) {
	for _, w := range []struct{ bucket, what string }{{bucketInbox, "the event's handling"}, {bucketOutbox, "reports to GitHub"}} {
		recs, err := b.journal.List(w.bucket, 1)
		if err != nil {
			return "", fmt.Errorf("read the journal: %w", err)
		}
		if len(recs) > 0 {
			return w.what, nil
		}
	}
	return "", nil
}

// StartFromEvent makes the bot report only engine events after seq, for a
// bot that starts empty beside an engine with history (the Action's event
// mode). It changes nothing once the bot has a cursor.
func (b *Bot) StartFromEvent(seq uint64) error {
	_, err := b.journal.PutIfAbsent(bucketCursor, "events", []byte(strconv.FormatUint(seq, 10)))
	return err
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return data
}

func mergeKey(repo, sha string) string { return repo + "@" + sha }

// mergedPR is the number of the pull request whose merge made commit sha
// of repo (recorded from its pull_request event), 0 when sluice saw none.
func mergedPR(j rollout.Journal, repo, sha string) (int, error) {
	data, err := j.Get(bucketMerges, mergeKey(repo, sha))
	if errors.Is(err, rollout.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pr, _ := strconv.Atoi(string(data))
	return pr, nil
}

func getJSON(j rollout.Journal, bucket, key string, v any) (bool, error) {
	data, err := j.Get(bucket, key)
	if errors.Is(err, rollout.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

func splitRepo(full string) (owner, name string) {
	owner, name, _ = strings.Cut(full, "/")
	return owner, name
}

// retryWait is how long to wait before the attempt-th retry of work that
// failed with err: exponential backoff, or longer when GitHub said so
// (Retry-After, a rate-limit reset).
func (c *core) retryWait(attempt int, err error) time.Duration {
	wait := min(retryMin<<min(attempt, 16), retryMax)
	if hint, ok := ghapp.ErrorRetryAfter(err, c.now()); ok && hint > wait {
		wait = hint
	}
	return wait
}
