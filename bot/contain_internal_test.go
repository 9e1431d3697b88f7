package bot

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
)

const containRepo = "Codertocat/Hello-World"

// oneClient hands out the same token client for every installation.
type oneClient struct{ c *github.Client }

func (o oneClient) Installation(int64) *github.Client { return o.c }

// containWorld is a bot over a real engine and journal, talking to the
// fake GitHub with comment 7 on pull request 1.
func containWorld(t *testing.T, eng func(*rollout.Engine) Engine) (*Bot, *githubtest.Server) {
	t.Helper()
	gh := githubtest.NewServer(t, githubtest.WithToken("workflow-token"))
	gh.AddRepo(containRepo, githubtest.RepoOpts{})
	gh.AddComment(containRepo, 1, githubtest.Comment{ID: 7, User: "Codertocat", Body: "/deploy"})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := ghapp.TokenClient(gh.URL(), "workflow-token", ghapp.WithLogger(quiet))
	w := enginetest.New(t, t.TempDir())
	return New(eng(w.Engine), w.DB, oneClient{c}, Config{}, WithLogger(quiet)), gh
}

// A report whose sending panics (here an unreadable finished check run) is
// dropped and counted; the report after it is still sent. Not parallel:
// the count is the process's, and other tests of this package panic on
// purpose.
func TestAPanickingReportFailsOnlyItself(t *testing.T) {
	b, gh := containWorld(t, func(e *rollout.Engine) Engine { return e })
	before := contain.Panics()
	if err := b.journal.Apply(
		rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindStatic, Repo: containRepo, Inst: 1, SHA: "abc"})),
		rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindReaction, Repo: containRepo, Inst: 1, CommentID: 7, Content: "rocket"})),
	); err != nil {
		t.Fatal(err)
	}
	if err := b.rep.sendOutbox(context.Background()); err != nil {
		t.Fatalf("the outbox stopped: %v", err)
	}
	if got := gh.Reactions(7); !slices.Equal(got, []string{"rocket"}) {
		t.Fatalf("the report after the panicking one: reactions %v", got)
	}
	if left, err := b.journal.List(bucketOutbox, 10); err != nil || len(left) != 0 {
		t.Fatalf("outbox left: %d %v", len(left), err)
	}
	if contain.Panics() < before+1 {
		t.Fatal("the panic was not counted")
	}
}

// statusPanics is the real engine whose Status panics for one service and
// whose history is the given events, standing for a bug in reporting one
// event.
type statusPanics struct {
	*rollout.Engine
	service string
	events  []rollout.Event
}

func (e *statusPanics) Status(ctx context.Context, service string) (rollout.ServiceStatus, error) {
	if service == e.service {
		panic("status exploded")
	}
	return e.Engine.Status(ctx, service)
}

func (e *statusPanics) Events(_ context.Context, service string, after uint64, limit int) ([]rollout.Event, error) {
	var out []rollout.Event
	for _, ev := range e.events {
		if ev.Seq > after {
			out = append(out, ev)
		}
	}
	return out, nil
}

// An engine event whose handling panics is skipped with its follow-up;
// the watcher moves past it and reports the next event.
func TestAPanickingEngineEventFailsOnlyItself(t *testing.T) {
	t.Parallel()
	ready := func(seq uint64, service string) rollout.Event {
		return rollout.Event{Seq: seq, Kind: rollout.EventVersionStatus, Op: "deploy", Status: rollout.StatusNormal,
			Service: service, Version: service + "-001", Origin: rollout.Origin{Via: "comment", Repo: containRepo, Installation: 1, PR: 1}}
	}
	b, _ := containWorld(t, func(e *rollout.Engine) Engine {
		return &statusPanics{Engine: e, service: "boom", events: []rollout.Event{ready(1, "boom"), ready(2, "hello")}}
	})
	p := &prCmd{repo: containRepo, inst: 1, pr: 1, commentID: 7, actor: "Codertocat"}
	if err := b.journal.Apply(
		rollout.Put(bucketFollowups, "boom-001", mustJSON(p.followup("deploy", "boom", "boom-001", 0))),
		rollout.Put(bucketFollowups, "hello-001", mustJSON(p.followup("deploy", "hello", "hello-001", 0))),
	); err != nil {
		t.Fatal(err)
	}
	if err := b.watch.watchEvents(context.Background()); err != nil {
		t.Fatalf("the watcher stopped: %v", err)
	}
	if cur, err := b.journal.Get(bucketCursor, "events"); err != nil || string(cur) != "2" {
		t.Fatalf("cursor %q %v; want past both events", cur, err)
	}
	if fu, err := b.journal.List(bucketFollowups, 10); err != nil || len(fu) != 0 {
		t.Fatalf("follow-ups left: %d %v", len(fu), err)
	}
	var st prState
	if _, err := getJSON(b.journal, bucketPRs, prKey(containRepo, 1), &st); err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, e := range st.Entries {
		titles = append(titles, e.Title)
	}
	if got := strings.Join(titles, "|"); got != "hello-001 is ready" {
		t.Fatalf("entries on the PR: %q", got)
	}
}

// Every command the grammar knows has a runner: a command added to
// package command without one would be parsed and then fail every time.
func TestEveryCommandHasARunner(t *testing.T) {
	t.Parallel()
	runners := (&commands{}).runners()
	for _, n := range command.Names() {
		if runners[n] == nil {
			t.Errorf("command %q has no runner", n)
		}
	}
	if len(runners) != len(command.Names()) {
		t.Errorf("%d runners for %d commands", len(runners), len(command.Names()))
	}
}
