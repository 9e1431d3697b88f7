package action

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/remote"
	"github.com/sluicehq/sluice/rollout"
)

// JournalDir is the directory under $RUNNER_TEMP where event mode keeps
// its journal.
const JournalDir = "sluice-action"

// settleRetry is how long event mode waits before driving the bot again
// when work is still pending (a report GitHub asked to retry later).
const settleRetry = time.Second

// maxSummaryEvents caps the history lines an event summary lists.
const maxSummaryEvents = 50

// workflowClients hands every installation the same client: the workflow
// token's (a workflow's events carry no installation, or one the token
// cannot act for).
type workflowClients struct{ c *github.Client }

func (w workflowClients) Installation(int64) *github.Client { return w.c }

// history is the remote engine with a history log the credential can read.
// The server-wide log needs the admin token; a repository-scoped
// credential (a sluice token, an OIDC token) reads the log of each service
// it can see instead, merged in sequence order (sequence numbers are
// server-wide).
type history struct {
	*remote.Engine
	perService bool
}

var _ bot.Engine = (*history)(nil)

// Events is the engine's Events over the log the credential can read.
func (h *history) Events(ctx context.Context, service string, after uint64, limit int) ([]rollout.Event, error) {
	if service != "" || !h.perService {
		return h.Engine.Events(ctx, service, after, limit)
	}
	names, err := h.Engine.Services(ctx)
	if err != nil {
		return nil, err
	}
	var all []rollout.Event
	for _, n := range names {
		evs, err := h.Engine.Events(ctx, n, after, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	slices.SortFunc(all, func(a, b rollout.Event) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// lastEvent is the newest event the credential can see. It also decides
// how the log is read: the server-wide log when the server allows it, each
// service's otherwise. When neither can be read, the error is the
// server-wide log's (the server's own reason: unreachable, token refused).
func (h *history) lastEvent(ctx context.Context) (uint64, error) {
	last, err := h.Engine.LastEvent(ctx)
	if err == nil {
		return last, nil
	}
	h.perService = true
	evs, perr := h.since(ctx, 0)
	if perr != nil {
		h.perService = false
		return 0, err
	}
	if len(evs) == 0 {
		return 0, nil
	}
	return evs[len(evs)-1].Seq, nil
}

// since returns every event after seq that the credential can see.
func (h *history) since(ctx context.Context, seq uint64) ([]rollout.Event, error) {
	var out []rollout.Event
	for {
		evs, err := h.Events(ctx, "", seq, 1000)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return out, nil
		}
		out = append(out, evs...)
		seq = evs[len(evs)-1].Seq
	}
}

// event is event mode: the workflow's event through the App's bot.
func (s *step) event(ctx context.Context) error {
	switch {
	case s.r.EventName == "" || s.r.EventPath == "":
		return fmt.Errorf("event mode runs in a workflow: GITHUB_EVENT_NAME and GITHUB_EVENT_PATH are not set")
	case s.r.Repository == "":
		return fmt.Errorf("event mode runs in a workflow: GITHUB_REPOSITORY is not set")
	case s.cfg.OpenJournal == nil:
		return fmt.Errorf("event mode needs a journal")
	}
	if _, err := ghapp.ParseAPIURL(s.r.APIURL); err != nil {
		return fmt.Errorf("GITHUB_API_URL: %w", err)
	}
	payload, err := os.ReadFile(s.r.EventPath)
	if err != nil {
		return fmt.Errorf("read the event payload: %w", err)
	}

	s.eng.Repo = s.r.Repository
	s.eng.WaitTimeout = s.in.Timeout
	h := &history{Engine: s.eng}
	start, err := h.lastEvent(ctx)
	if err != nil {
		return s.serverError(err)
	}

	dir := filepath.Join(s.tempDir(), JournalDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	j, closer, err := s.cfg.OpenJournal(dir)
	if err != nil {
		return fmt.Errorf("open the journal: %w", err)
	}
	defer func() {
		if err := closer.Close(); err != nil {
			s.log.Error("close the journal", "err", err)
		}
	}()

	gh := ghapp.TokenClient(s.r.APIURL, s.in.GitHubToken, ghapp.WithLogger(s.log))
	b := bot.New(h, j, workflowClients{gh}, bot.Config{
		Repo:      s.r.Repository,
		PublicURL: s.in.Server,
		Secrets:   []string{s.in.GitHubToken, s.token},
	}, bot.WithLogger(s.log))
	if err := b.StartFromEvent(start); err != nil {
		return fmt.Errorf("start the bot's cursor: %w", err)
	}
	id := "action-" + s.r.RunID + "-" + s.r.RunAttempt
	_, accepted, err := b.Accept(s.r.EventName, id, payload)
	if err != nil {
		return fmt.Errorf("accept the %s event: %w", s.r.EventName, err)
	}
	s.log.Info("event accepted", "event", s.r.EventName, "delivery", id, "status", accepted)

	sctx, cancel := context.WithTimeout(ctx, s.in.Timeout)
	defer cancel()
	if err := s.settle(sctx, b, j); err != nil {
		return s.serverError(err)
	}

	evs, err := h.since(ctx, start)
	if err != nil {
		return s.serverError(err)
	}
	evs = slices.DeleteFunc(evs, func(e rollout.Event) bool { return e.Origin.Repo != s.r.Repository })
	return s.reportEvent(ctx, accepted, evs)
}

// settle drives the bot until the delivery is handled and every report is
// sent, retrying while GitHub or the sluice server fail, until ctx ends.
func (s *step) settle(ctx context.Context, b *bot.Bot, j rollout.Journal) error {
	for {
		err := b.Sync(ctx)
		if err == nil {
			left, lerr := b.Pending()
			if lerr != nil {
				return lerr
			}
			if left == "" {
				return nil
			}
			err = fmt.Errorf("%s still pending", left)
		}
		s.log.Warn("work left; trying again", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("handle the event within %s: %w", s.in.Timeout, err)
		case <-time.After(settleRetry):
		}
	}
}

// reportEvent writes the summary and outputs of event mode: what happened
// on the server, and the versions it touched.
func (s *step) reportEvent(ctx context.Context, accepted string, evs []rollout.Event) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### sluice: `%s` event %s\n\n", s.r.EventName, map[string]string{
		"accepted": "handled", "ignored": "ignored (sluice does not act on it)", "duplicate": "already handled by this run",
		"stale": "ignored (older than sluice's replay horizon of 84 hours: re-running an old workflow run does not replay its event)",
	}[accepted])
	if len(evs) == 0 {
		b.WriteString("Nothing changed on the sluice server. Any answer to a command is on the pull request.\n\n")
		s.writeSummary(b.String())
		fmt.Fprintf(s.cfg.Stdout, "sluice: %s event %s; nothing changed\n", s.r.EventName, accepted)
		return nil
	}
	var services []string
	touched := map[string][]string{}
	for i, e := range evs {
		if !slices.Contains(services, e.Service) {
			services = append(services, e.Service)
		}
		if e.Version != "" && !slices.Contains(touched[e.Service], e.Version) {
			touched[e.Service] = append(touched[e.Service], e.Version)
		}
		if i < maxSummaryEvents {
			fmt.Fprintf(&b, "- %s\n", cell(e.Message))
		}
	}
	if len(evs) > maxSummaryEvents {
		fmt.Fprintf(&b, "- … and %d more\n", len(evs)-maxSummaryEvents)
	}
	var last rollout.VersionStatus
	for _, name := range services {
		st, err := s.eng.Status(ctx, name)
		if err != nil {
			return s.serverError(err)
		}
		fmt.Fprintf(&b, "\n**%s** %s\n\n", name, st.URL)
		b.WriteString(versionTable(st, touched[name]))
		for _, vn := range touched[name] {
			v, ok := findVersion(st, vn)
			if !ok {
				continue
			}
			if v.Status != rollout.StatusNormal && v.Reason.Code != "" {
				b.WriteString(reasonMarkdown(v))
			}
			last = v
			fmt.Fprintf(s.cfg.Stdout, "sluice: %s is %s, %d%% of the traffic %s\n", v.Name, v.Status, v.Traffic, v.URL)
		}
	}
	b.WriteString("\n")
	s.writeSummary(b.String())
	if last.Name != "" {
		s.writeOutputs(Output{"version", last.Name}, Output{"url", last.URL}, Output{"status", string(last.Status)})
	}
	return nil
}
