package bot

import (
	"context"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/rollout"
)

// secretsFor lists what must never appear in a version's reports: the
// configured secrets and the version's env values that redact.Env hides.
func (rp *reporter) secretsFor(v rollout.VersionStatus) []string {
	return append(append([]string(nil), rp.cfg.Secrets...), redact.Env(v.Config.Env)...)
}

// secretCache holds the redaction set of every version sluice runs, with
// the engine's history position it was read at. A version's env enters the
// engine only with an event (a version created, a configuration replaced),
// so the set stays right until the history moves on: it is read again only
// then, once per round in which something happened, instead of asking
// every service's status for every entry a PR gets.
type secretCache struct {
	mu     sync.Mutex
	valid  bool
	seq    uint64 // last engine event seen when values were read
	values []string
}

// allSecrets is secretsFor over every version sluice runs: what sluice
// says on a PR (a status table, a failure) may quote any of them. A
// version deployed since the last call is in it: the history is checked
// first, and the statuses read after it.
func (rp *reporter) allSecrets(ctx context.Context) []string {
	c := &rp.secrets
	c.mu.Lock()
	defer c.mu.Unlock()
	from := c.seq
	if !c.valid {
		// Only the position matters, not the events: start where the
		// watcher is rather than page through the whole history.
		if seq, err := rp.cursor(); err == nil {
			from = max(from, seq)
		}
	}
	seq, moved, err := rp.historySince(ctx, from)
	if err == nil && c.valid && !moved {
		return append(append([]string(nil), rp.cfg.Secrets...), c.values...)
	}
	values, ok := rp.envSecrets(ctx)
	c.valid, c.seq, c.values = ok && err == nil, seq, values
	return append(append([]string(nil), rp.cfg.Secrets...), values...)
}

// historySince returns the newest engine event after seq (seq itself when
// there is none) and whether there was any.
func (rp *reporter) historySince(ctx context.Context, seq uint64) (uint64, bool, error) {
	moved := false
	for {
		evs, err := rp.eng.Events(ctx, "", seq, 100)
		if err != nil {
			return seq, moved, err
		}
		if len(evs) == 0 {
			return seq, moved, nil
		}
		seq, moved = evs[len(evs)-1].Seq, true
	}
}

// cursor is the last engine event the watcher handled (0: none yet).
func (c *core) cursor() (uint64, error) {
	data, err := c.journal.Get(bucketCursor, "events")
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	seq, _ := strconv.ParseUint(string(data), 10, 64)
	return seq, nil
}

// envSecrets lists the env values redact.Env hides, over every version of
// every service; false when a service could not be read.
func (rp *reporter) envSecrets(ctx context.Context) ([]string, bool) {
	names, err := rp.eng.Services(ctx)
	if err != nil {
		return nil, false
	}
	var out []string
	ok := true
	for _, n := range names {
		st, err := rp.eng.Status(ctx, n)
		if err != nil {
			ok = false
			continue
		}
		for _, v := range st.Versions {
			out = append(out, redact.Env(v.Config.Env)...)
		}
	}
	return out, ok
}
