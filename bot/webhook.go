package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/rollout"
)

// delivery is one accepted webhook delivery, as kept in the inbox.
type delivery struct {
	ID       string          `json:"id"`
	Event    string          `json:"event"`
	Body     json.RawMessage `json:"body"`
	Received time.Time       `json:"received"`
	Attempts int             `json:"attempts,omitempty"`
	// NotBefore delays a retry after GitHub failed us.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// handler handles one delivery. It returns the journal ops (reports,
// state) to apply together with settling the delivery. An error marked
// permanent, or GitHub's final answer (ghapp.Permanent), ends the
// delivery with a reply saying why; any other is retried with backoff.
type handler func(ctx context.Context, d delivery) ([]rollout.Op, error)

// maxDeliveryAttempts bounds how often a failing delivery is retried
// (about four hours with the backoff's cap).
const maxDeliveryAttempts = 50

// errPermanent marks an error retrying will not fix.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

func permanent(err error) error { return errPermanent{err} }

// Permanent reports true: retrying will not help.
func (e errPermanent) Permanent() bool { return true }

// isPermanent reports whether err (or an error it wraps) says retrying is
// useless, by a Permanent() bool method — so other packages (the remote
// engine refusing a credential) can say so without importing the bot.
func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// handlers maps an X-GitHub-Event to its handler (register, don't switch).
func (in *inbox) handlers() map[string]handler {
	return map[string]handler{
		"issue_comment":             in.cmds.onIssueComment,
		"push":                      in.cmds.onPush,
		"pull_request":              in.cmds.onPullRequest,
		"check_run":                 in.cmds.onCheckRun,
		"installation":              in.onInstallation,
		"installation_repositories": in.onInstallation,
		"ping":                      in.onPing,
	}
}

// Register mounts POST /webhooks/github on e.
func (b *Bot) Register(e *echo.Echo) {
	e.POST("/webhooks/github", b.in.webhook)
}

// webhook verifies, records and acknowledges a delivery; a worker handles
// it later. Nothing is parsed before the signature holds. At most
// MaxInflight deliveries are read and checked at once; the answer is
// written after the slot is given back.
func (in *inbox) webhook(c echo.Context) error {
	select {
	case in.inflight <- struct{}{}:
	default:
		c.Response().Header().Set("Retry-After", "1")
		return c.JSON(errorReply(http.StatusServiceUnavailable, "busy",
			fmt.Sprintf("%d webhook deliveries are already being read; try again", in.cfg.MaxInflight)))
	}
	code, reply := in.receive(c.Request(), c.Response())
	<-in.inflight
	return c.JSON(code, reply)
}

// receive reads, verifies and records one delivery and says what to
// answer.
func (in *inbox) receive(r *http.Request, w http.ResponseWriter) (int, any) {
	// A slow sender holds its slot for BodyTimeout at most.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(in.cfg.BodyTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, in.cfg.MaxBody+1))
	if err != nil {
		return errorReply(http.StatusBadRequest, "unreadable_body", "could not read the request body")
	}
	if int64(len(body)) > in.cfg.MaxBody {
		return errorReply(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("webhook bodies are limited to %d bytes", in.cfg.MaxBody))
	}
	h := r.Header
	if err := ghapp.VerifySignature(in.cfg.WebhookSecret, body, h.Get("X-Hub-Signature-256")); err != nil {
		in.log.Warn("webhook signature refused", "delivery", h.Get("X-GitHub-Delivery"), "err", err)
		return errorReply(http.StatusUnauthorized, "bad_signature", "missing or invalid X-Hub-Signature-256")
	}
	code, msg, err := in.accept(h.Get("X-GitHub-Event"), h.Get("X-GitHub-Delivery"), body)
	if err != nil {
		var ae *acceptError
		if errors.As(err, &ae) {
			return errorReply(ae.status, ae.code, ae.Error())
		}
		in.log.Error("record delivery", "delivery", h.Get("X-GitHub-Delivery"), "err", err)
		return errorReply(http.StatusInternalServerError, "internal", "could not record the delivery")
	}
	return code, map[string]string{"status": msg}
}

func errorReply(status int, code, msg string) (int, any) {
	return status, map[string]any{"error": map[string]string{"code": code, "message": msg}}
}

type acceptError struct {
	status int
	code   string
	msg    string
}

func (e *acceptError) Error() string { return e.msg }

// Accept records a verified delivery for handling and reports the status
// to answer with: 202 accepted, 200 for a duplicate, an ignored event, or
// a "stale" one (older than the replay horizon, see maxEventAge). A
// transport that verified the delivery itself (the GitHub Action's event
// mode reads it from the runner) calls Accept directly. Safe for
// concurrent use.
func (b *Bot) Accept(event, id string, body []byte) (int, string, error) {
	return b.in.accept(event, id, body)
}

func (in *inbox) accept(event, id string, body []byte) (int, string, error) {
	if event == "" || id == "" {
		return 0, "", &acceptError{http.StatusBadRequest, "missing_header", "X-GitHub-Event and X-GitHub-Delivery are required"}
	}
	if !json.Valid(body) {
		return 0, "", &acceptError{http.StatusBadRequest, "malformed_json", "the body is not valid JSON"}
	}
	if _, ok := in.handlers()[event]; !ok {
		return http.StatusOK, "ignored", nil
	}
	now := in.now().UTC()
	if why := staleReason(event, body, now); why != "" {
		// Past the horizon its records may have been pruned: acting on it
		// could run a replay again.
		in.log.Warn("delivery ignored: older than the replay horizon", "delivery", id, "event", event, "reason", why)
		return http.StatusOK, "stale", nil
	}
	d := delivery{ID: id, Event: event, Body: body, Received: now}
	added, err := in.journal.PutIfAbsent(bucketSeen, id, []byte(now.Format(time.RFC3339)), rollout.Append(bucketInbox, mustJSON(d)))
	if err != nil {
		return 0, "", err
	}
	if !added {
		return http.StatusOK, "duplicate", nil
	}
	in.log.Info("delivery accepted", "delivery", id, "event", event)
	in.poke()
	return http.StatusAccepted, "accepted", nil
}

func (in *inbox) onPing(ctx context.Context, d delivery) ([]rollout.Op, error) {
	in.log.Info("ping from GitHub", "delivery", d.ID)
	return nil, nil
}

func (in *inbox) onInstallation(ctx context.Context, d delivery) ([]rollout.Op, error) {
	var p struct {
		Action       string `json:"action"`
		Installation struct {
			ID int64 `json:"id"`
		} `json:"installation"`
	}
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, permanent(fmt.Errorf("decode installation event: %w", err))
	}
	in.log.Info("installation changed", "delivery", d.ID, "installation", p.Installation.ID, "action", p.Action)
	return nil, nil
}
