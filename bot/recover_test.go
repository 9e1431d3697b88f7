package bot_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
)

// recovering builds a bot with missed-webhook recovery over w's engine,
// store and GitHub, with its own webhook, and points GitHub's App
// webhook at it.
func (w *world) recovering() (*bot.Bot, string) {
	w.t.Helper()
	f, ok := w.f.(*ghapp.Factory)
	if !ok {
		w.t.Fatalf("clients are %T, not the App's factory", w.f)
	}
	b := bot.New(w.eng, w.db, f, bot.Config{WebhookSecret: secret}, bot.WithRecovery(f.App(), 0))
	e := echo.New()
	b.Register(e)
	srv := httptest.NewServer(e)
	w.t.Cleanup(srv.Close)
	w.gh.SetWebhook(srv.URL+"/webhooks/github", secret)
	return b, srv.URL + "/webhooks/github"
}

func recoverMissed(t *testing.T, b *bot.Bot) int {
	t.Helper()
	n, err := b.RecoverMissed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A merge GitHub could not deliver while sluice was down is asked for
// again and deployed; deliveries sluice has, and events it does not
// handle, are not; one sluice keeps refusing is asked for a bounded
// number of times.
func TestMissedWebhooksAreRedelivered(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.SetWebhook(w.hook.URL+"/webhooks/github", secret)
	if d := w.gh.SendWebhook("ping", []byte(`{"zen":"hi"}`)); d.StatusCode != http.StatusAccepted {
		t.Fatalf("ping: %+v", d)
	}
	w.hook.Close() // sluice is down
	if d := w.gh.SendWebhook("push", githubtest.Fixture(t, "push.json")); d.StatusCode != http.StatusBadGateway {
		t.Fatalf("push to a stopped sluice: %+v", d)
	}
	w.gh.SendWebhook("star", []byte(`{"action":"created"}`))

	b, _ := w.recovering()
	if n := recoverMissed(t, b); n != 1 {
		t.Fatalf("asked for %d redeliveries, want 1 (the push)", n)
	}
	ctx := context.Background()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.status(); st.Stable != "hello-001" || len(st.Versions) != 1 {
		t.Fatalf("the recovered merge was not deployed: %+v", st)
	}
	if n := recoverMissed(t, b); n != 0 {
		t.Fatalf("a recovered delivery was asked for again: %d", n)
	}

	// A delivery sluice refuses (signed with another secret) is asked for
	// three times, then left alone.
	b2, url := w.recovering()
	w.gh.SetWebhook(url, []byte("another secret"))
	if d := w.gh.SendWebhook("push", pushOf(t, "2222222222222222222222222222222222222222")); d.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrongly signed push: %+v", d)
	}
	for i, want := range []int{1, 1, 1, 0} {
		if n := recoverMissed(t, b2); n != want {
			t.Fatalf("round %d asked for %d redeliveries, want %d", i, n, want)
		}
	}
}
