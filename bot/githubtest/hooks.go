package githubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// HookDelivery is one attempt GitHub made to deliver an event to the
// App's webhook, as GET /app/hook/deliveries lists it.
type HookDelivery struct {
	ID   int64
	GUID string
	// Event and Action name the webhook ("push", "" for events without one).
	Event, Action  string
	InstallationID int64
	RepositoryID   int64
	DeliveredAt    time.Time
	Redelivery     bool
	// StatusCode is what the webhook answered; 502 with Status "failed to
	// connect" when it could not be reached, as GitHub records it.
	StatusCode int
	Status     string
	body       []byte
}

// SetWebhook sets where the App's webhook deliveries go (the URL of
// sluice's POST /webhooks/github) and the secret they are signed with;
// SendWebhook and redeliveries use it.
func (s *Server) SetWebhook(url string, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL, s.hookSecret = url, append([]byte(nil), secret...)
}

// SendWebhook delivers event with body to the App's webhook as GitHub
// does — signed, with a new delivery GUID — records the attempt in the
// list GET /app/hook/deliveries answers, and returns it. An unreachable
// webhook is recorded as GitHub records it (502, "failed to connect");
// nothing fails the test.
func (s *Server) SendWebhook(event string, body []byte) HookDelivery {
	var p struct {
		Action       string `json:"action"`
		Installation struct {
			ID int64 `json:"id"`
		} `json:"installation"`
		Repository struct {
			ID int64 `json:"id"`
		} `json:"repository"`
	}
	_ = json.Unmarshal(body, &p)
	s.mu.Lock()
	d := &HookDelivery{ID: s.id(), GUID: newUUID(), Event: event, Action: p.Action,
		InstallationID: p.Installation.ID, RepositoryID: p.Repository.ID, body: append([]byte(nil), body...)}
	s.hooks = append(s.hooks, d)
	s.mu.Unlock()
	return s.post(d)
}

// HookDeliveries returns every delivery attempt so far, oldest first.
func (s *Server) HookDeliveries() []HookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]HookDelivery, len(s.hooks))
	for i, d := range s.hooks {
		out[i] = *d
	}
	return out
}

// post sends d to the webhook and records the answer; s.mu must not be
// held (the webhook may take its time).
func (s *Server) post(d *HookDelivery) HookDelivery {
	s.mu.Lock()
	url, secret := s.hookURL, s.hookSecret
	s.mu.Unlock()
	code, status := http.StatusBadGateway, "failed to connect"
	if url != "" {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "GitHub-Hookshot/githubtest")
			req.Header.Set("X-GitHub-Event", d.Event)
			req.Header.Set("X-GitHub-Delivery", d.GUID)
			req.Header.Set("X-GitHub-Hook-ID", "1")
			req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
			req.Header.Set("X-GitHub-Hook-Installation-Target-ID", strconv.FormatInt(s.appID, 10))
			req.Header.Set("X-Hub-Signature-256", Sign(secret, d.body))
			client := &http.Client{Timeout: 10 * time.Second} // GitHub gives a webhook 10 s
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				code, status = resp.StatusCode, "OK"
				if code >= 300 {
					status = http.StatusText(code)
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.DeliveredAt, d.StatusCode, d.Status = now(), code, status
	return *d
}

func hookJSON(d *HookDelivery) map[string]any {
	var action any
	if d.Action != "" {
		action = d.Action
	}
	nullable := func(v int64) any {
		if v == 0 {
			return nil
		}
		return v
	}
	return map[string]any{
		"id": d.ID, "guid": d.GUID, "delivered_at": ts(d.DeliveredAt), "redelivery": d.Redelivery,
		"duration": 0.01, "status": d.Status, "status_code": d.StatusCode, "event": d.Event, "action": action,
		"installation_id": nullable(d.InstallationID), "repository_id": nullable(d.RepositoryID),
	}
}

// listHookDeliveries answers newest first, paginated by an opaque cursor
// in the Link header, as GitHub does.
func (s *Server) listHookDeliveries(c *call) reply {
	q := c.r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	all := make([]*HookDelivery, 0, len(s.hooks))
	for _, d := range s.hooks {
		if !d.DeliveredAt.IsZero() {
			all = append(all, d)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].ID > all[j].ID })
	start := 0
	if cur := q.Get("cursor"); cur != "" {
		id, err := strconv.ParseInt(cur, 10, 64)
		if err != nil {
			return errReply(http.StatusBadRequest, "invalid cursor")
		}
		for start < len(all) && all[start].ID > id {
			start++
		}
	}
	end := min(start+per, len(all))
	items := make([]any, 0, end-start)
	for _, d := range all[start:end] {
		items = append(items, hookJSON(d))
	}
	rep := jsonReply(http.StatusOK, items)
	if end < len(all) {
		q.Set("cursor", strconv.FormatInt(all[end].ID, 10))
		q.Set("per_page", strconv.Itoa(per))
		rep.header = http.Header{"Link": {fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.srv.URL, c.r.URL.EscapedPath(), q.Encode())}}
	}
	return rep
}

// redeliverHook delivers the attempt's event again (same GUID, marked as
// a redelivery) and answers 202.
func (s *Server) redeliverHook(c *call) reply {
	id, _ := intParam(c, "delivery_id")
	var orig *HookDelivery
	for _, d := range s.hooks {
		if d.ID == id {
			orig = d
		}
	}
	if orig == nil {
		return notFound()
	}
	d := &HookDelivery{ID: s.id(), GUID: orig.GUID, Event: orig.Event, Action: orig.Action, InstallationID: orig.InstallationID,
		RepositoryID: orig.RepositoryID, Redelivery: true, body: orig.body}
	s.hooks = append(s.hooks, d)
	rep := jsonReply(http.StatusAccepted, map[string]any{})
	rep.after = func() { s.post(d) }
	return rep
}
