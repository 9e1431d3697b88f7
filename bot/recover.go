package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/rollout"
)

// Bounds of missed-webhook recovery.
const (
	// defaultRecoverEvery is how often Run looks for missed deliveries.
	defaultRecoverEvery = 5 * time.Minute
	// recoverWindow is how far back deliveries are looked at: GitHub
	// keeps (and redelivers) the last three days.
	recoverWindow = 72 * time.Hour
	// recoverPages bounds the pages of 100 deliveries read per round.
	recoverPages = 10
	// recoverPerRound bounds the redeliveries asked for per round.
	recoverPerRound = 20
	// recoverPerDelivery bounds the redeliveries asked for one delivery,
	// so one that sluice always refuses (a bad signature) is not asked
	// for forever.
	recoverPerDelivery = 3
)

// bucketRedelivered: delivery GUID → how many redeliveries were asked for.
const bucketRedelivered = "gh-redelivered"

// WithRecovery makes Run recover missed webhooks: on start and every
// `every` (every 5 minutes when <= 0) it lists the App's recent
// deliveries with app, a client authenticated as the App itself
// (ghapp.Factory.App), and asks GitHub to redeliver each one of the last
// 72 hours that sluice never recorded. GitHub does not redeliver by
// itself: without this a delivery sent while sluice was down is lost.
func WithRecovery(app *github.Client, every time.Duration) Option {
	if every <= 0 {
		every = defaultRecoverEvery
	}
	return func(b *Bot) { b.in.app, b.in.recoverEvery = app, every }
}

// RecoverMissed asks GitHub to redeliver the App's deliveries of the last
// 72 hours that sluice never recorded — failed because sluice was down or
// unreachable, or answered by no one — for events sluice handles: at most
// recoverPerRound per call and recoverPerDelivery per delivery, oldest
// first. It returns how many redeliveries it asked for. A bot built
// without WithRecovery does nothing. Not safe to call concurrently with
// itself; Run calls it.
func (b *Bot) RecoverMissed(ctx context.Context) (int, error) { return b.in.recoverMissed(ctx) }

func (in *inbox) recoverMissed(ctx context.Context) (int, error) {
	if in.app == nil {
		return 0, nil
	}
	newest, err := in.recentDeliveries(ctx)
	if err != nil {
		return 0, err
	}
	handled := in.handlers()
	n := 0
	for _, d := range newest {
		guid := d.GetGUID()
		if _, ok := handled[d.GetEvent()]; !ok || guid == "" {
			continue
		}
		if _, err := in.journal.Get(bucketSeen, guid); err == nil {
			continue // recorded: handled or in the inbox
		} else if !isNotFound(err) {
			return n, fmt.Errorf("read delivery %s: %w", guid, err)
		}
		asked := 0
		if data, err := in.journal.Get(bucketRedelivered, guid); err == nil {
			asked, _ = strconv.Atoi(string(data))
		}
		if asked >= recoverPerDelivery {
			continue
		}
		if n >= recoverPerRound {
			in.log.Info("more missed deliveries wait for the next round", "delivery", guid)
			break
		}
		// Counted before asking: a crash in between must not turn into
		// asking without bound.
		if err := in.journal.Apply(rollout.Put(bucketRedelivered, guid, []byte(strconv.Itoa(asked+1)))); err != nil {
			return n, fmt.Errorf("record redelivery of %s: %w", guid, err)
		}
		_, _, err := in.app.Apps.RedeliverHookDelivery(ctx, d.GetID())
		var accepted *github.AcceptedError
		if err != nil && !errors.As(err, &accepted) {
			if ghapp.Permanent(err) {
				in.log.Warn("redelivery refused", "delivery", guid, "event", d.GetEvent(), "err", err)
				continue
			}
			return n, fmt.Errorf("redeliver %s: %w", guid, err)
		}
		n++
		in.log.Info("asked GitHub to redeliver a missed webhook", "delivery", guid, "event", d.GetEvent(),
			"delivered_at", d.GetDeliveredAt().Format(time.RFC3339), "status_code", d.GetStatusCode(), "attempt", asked+1)
	}
	return n, nil
}

// recentDeliveries lists the newest attempt of each of the App's
// deliveries of the last recoverWindow, oldest first, reading at most
// recoverPages pages.
func (in *inbox) recentDeliveries(ctx context.Context) ([]*github.HookDelivery, error) {
	cutoff := in.now().Add(-recoverWindow)
	var newest []*github.HookDelivery // newest attempt of each GUID, newest first
	seen := map[string]bool{}
	opts := &github.ListCursorOptions{PerPage: 100}
	for range recoverPages {
		ds, resp, err := in.app.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list webhook deliveries: %w", err)
		}
		old := false
		for _, d := range ds {
			if d.GetDeliveredAt().Before(cutoff) {
				old = true
				continue
			}
			if !seen[d.GetGUID()] {
				seen[d.GetGUID()] = true
				newest = append(newest, d)
			}
		}
		if old || resp == nil || resp.Cursor == "" {
			break
		}
		opts.Cursor = resp.Cursor
	}
	slices.Reverse(newest)
	return newest, nil
}
