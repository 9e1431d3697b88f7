package githubtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Handlers run with s.mu held; they answer like GitHub, including its
// 404s and 422s, and never fail the test themselves.

const timeFormat = time.RFC3339

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeFormat)
}

func (s *Server) userJSON(login string) map[string]any {
	typ := "User"
	if strings.HasSuffix(login, "[bot]") {
		typ = "Bot"
	}
	var id int64
	for _, ch := range login {
		id = id*31 + int64(ch)
	}
	if id < 0 {
		id = -id
	}
	id = id%1_000_000 + 1
	return map[string]any{
		"login":      login,
		"id":         id,
		"node_id":    "U_" + login,
		"type":       typ,
		"site_admin": false,
		"url":        s.srv.URL + "/users/" + url.PathEscape(login),
		"html_url":   "https://github.com/" + url.PathEscape(login),
	}
}

func (s *Server) repoJSON(r *repoState) map[string]any {
	return map[string]any{
		"id":             r.opts.ID,
		"node_id":        fmt.Sprintf("R_%d", r.opts.ID),
		"name":           r.name,
		"full_name":      r.fullName(),
		"owner":          s.userJSON(r.owner),
		"private":        r.opts.Private,
		"default_branch": r.opts.DefaultBranch,
		"html_url":       "https://github.com/" + r.fullName(),
		"url":            s.apiURL(r, ""),
	}
}

// apiURL is the fake's URL of a repository resource.
func (s *Server) apiURL(r *repoState, rest string) string {
	u := s.srv.URL + "/repos/" + r.fullName()
	if rest != "" {
		u += "/" + rest
	}
	return u
}

func (s *Server) appJSON() map[string]any {
	return map[string]any{
		"id":           s.appID,
		"slug":         s.appSlug,
		"node_id":      fmt.Sprintf("A_%d", s.appID),
		"name":         s.appSlug,
		"description":  "",
		"external_url": "https://example.com",
		"html_url":     "https://github.com/apps/" + s.appSlug,
		"owner":        s.userJSON("sluicehq"),
		"created_at":   "2024-01-01T00:00:00Z",
		"updated_at":   "2024-01-01T00:00:00Z",
		"permissions": map[string]string{
			"checks": "write", "contents": "read", "issues": "write",
			"pull_requests": "write", "deployments": "write", "metadata": "read",
		},
		"events": []string{"issue_comment", "push", "pull_request", "check_run"},
	}
}

func decode(c *call, v any) *reply {
	if len(c.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		rep := errReply(http.StatusBadRequest, "Problems parsing JSON")
		return &rep
	}
	return nil
}

func intParam(c *call, name string) (int64, bool) {
	v, err := strconv.ParseInt(c.params[name], 10, 64)
	return v, err == nil
}

// paginate slices n items by the request's page and per_page (default 30,
// at most 100) and sets a Link header like GitHub's.
func (s *Server) paginate(c *call, n int, rep *reply) (lo, hi int) {
	q := c.r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	last := max((n+per-1)/per, 1)
	lo = min((page-1)*per, n)
	hi = min(lo+per, n)
	link := func(p int, rel string) string {
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(per))
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, s.srv.URL, c.r.URL.EscapedPath(), q.Encode(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		if rep.header == nil {
			rep.header = http.Header{}
		}
		rep.header.Set("Link", strings.Join(links, ", "))
	}
	return lo, hi
}

// --- apps ---

func (s *Server) getApp(c *call) reply { return jsonReply(http.StatusOK, s.appJSON()) }

func (s *Server) createToken(c *call) reply {
	id, _ := intParam(c, "installation_id")
	if !s.installed(id) {
		return notFound()
	}
	var req struct {
		Repositories  []string `json:"repositories"`
		RepositoryIDs []int64  `json:"repository_ids"`
	}
	if rep := decode(c, &req); rep != nil {
		return *rep
	}
	var scope map[string]bool
	var scoped []any
	if len(req.Repositories) > 0 || len(req.RepositoryIDs) > 0 {
		scope = make(map[string]bool)
		for _, r := range s.repos {
			if r.opts.InstallationID != id {
				continue
			}
			if slices.Contains(req.Repositories, r.name) || slices.Contains(req.RepositoryIDs, r.opts.ID) {
				scope[r.key()] = true
				scoped = append(scoped, s.repoJSON(r))
			}
		}
		if len(scoped) != len(req.Repositories)+len(req.RepositoryIDs) {
			return errReply(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
		}
	}
	tok, exp := s.mint(id, scope)
	body := map[string]any{
		"token":                tok,
		"expires_at":           ts(exp),
		"permissions":          s.appJSON()["permissions"],
		"repository_selection": "all",
	}
	if scope != nil {
		body["repository_selection"] = "selected"
		body["repositories"] = scoped
	}
	return jsonReply(http.StatusCreated, body)
}

func (s *Server) getRepoInstallation(c *call) reply {
	r := c.repo
	if r.opts.InstallationID == 0 {
		return notFound()
	}
	id := r.opts.InstallationID
	return jsonReply(http.StatusOK, map[string]any{
		"id":                   id,
		"account":              s.userJSON(r.owner),
		"app_id":               s.appID,
		"app_slug":             s.appSlug,
		"target_id":            1,
		"target_type":          "User",
		"repository_selection": "selected",
		"access_tokens_url":    fmt.Sprintf("%s/app/installations/%d/access_tokens", s.srv.URL, id),
		"repositories_url":     s.srv.URL + "/installation/repositories",
		"html_url":             fmt.Sprintf("https://github.com/settings/installations/%d", id),
		"permissions":          s.appJSON()["permissions"],
		"events":               s.appJSON()["events"],
		"created_at":           "2024-01-01T00:00:00Z",
		"updated_at":           "2024-01-01T00:00:00Z",
		"single_file_name":     nil,
	})
}

// --- checks ---

type checkRunBody struct {
	Name        *string          `json:"name"`
	HeadSHA     *string          `json:"head_sha"`
	DetailsURL  *string          `json:"details_url"`
	ExternalID  *string          `json:"external_id"`
	Status      *string          `json:"status"`
	Conclusion  *string          `json:"conclusion"`
	StartedAt   *time.Time       `json:"started_at"`
	CompletedAt *time.Time       `json:"completed_at"`
	Output      *CheckRunOutput  `json:"output"`
	Actions     []CheckRunAction `json:"actions"`
}

func (b *checkRunBody) apply(cr *CheckRun) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&cr.Name, b.Name)
	set(&cr.DetailsURL, b.DetailsURL)
	set(&cr.ExternalID, b.ExternalID)
	if b.Status != nil {
		cr.Status = *b.Status
		if cr.Status != "completed" {
			cr.Conclusion, cr.CompletedAt = "", time.Time{}
		}
	}
	if b.Conclusion != nil {
		cr.Conclusion = *b.Conclusion
		cr.Status = "completed"
	}
	if b.StartedAt != nil {
		cr.StartedAt = b.StartedAt.UTC()
	}
	if b.CompletedAt != nil {
		cr.CompletedAt = b.CompletedAt.UTC()
	}
	if cr.Status == "completed" && cr.CompletedAt.IsZero() {
		cr.CompletedAt = now()
	}
	if b.Output != nil {
		anns := append(cr.Output.Annotations, b.Output.Annotations...)
		cr.Output = *b.Output
		cr.Output.Annotations = anns
	}
	if b.Actions != nil {
		cr.Actions = slices.Clone(b.Actions)
	}
}

func (s *Server) checkRunJSON(r *repoState, cr *CheckRun) map[string]any {
	var prs []any
	nums := make([]int, 0, len(r.prs))
	for n := range r.prs {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		pr := r.prs[n]
		if pr.headSHA != cr.HeadSHA {
			continue
		}
		base := ""
		if c := r.defaultHead(); c != nil {
			base = c.sha
		}
		prs = append(prs, map[string]any{
			"id":     int64(n),
			"number": n,
			"url":    s.apiURL(r, fmt.Sprintf("pulls/%d", n)),
			"head":   map[string]any{"ref": pr.headRef, "sha": pr.headSHA, "repo": map[string]any{"id": r.opts.ID, "name": r.name, "url": s.apiURL(r, "")}},
			"base":   map[string]any{"ref": r.opts.DefaultBranch, "sha": base, "repo": map[string]any{"id": r.opts.ID, "name": r.name, "url": s.apiURL(r, "")}},
		})
	}
	if prs == nil {
		prs = []any{}
	}
	var conclusion any
	if cr.Conclusion != "" {
		conclusion = cr.Conclusion
	}
	url := s.apiURL(r, fmt.Sprintf("check-runs/%d", cr.ID))
	var actions any = []CheckRunAction{}
	if cr.Actions != nil {
		actions = cr.Actions
	}
	return map[string]any{
		"id":           cr.ID,
		"node_id":      fmt.Sprintf("CR_%d", cr.ID),
		"head_sha":     cr.HeadSHA,
		"external_id":  cr.ExternalID,
		"url":          url,
		"html_url":     fmt.Sprintf("https://github.com/%s/runs/%d", r.fullName(), cr.ID),
		"details_url":  cr.DetailsURL,
		"status":       cr.Status,
		"conclusion":   conclusion,
		"started_at":   ts(cr.StartedAt),
		"completed_at": ts(cr.CompletedAt),
		"name":         cr.Name,
		"output": map[string]any{
			"title":             cr.Output.Title,
			"summary":           cr.Output.Summary,
			"text":              cr.Output.Text,
			"annotations_count": len(cr.Output.Annotations),
			"annotations_url":   url + "/annotations",
		},
		"check_suite":   map[string]any{"id": 1},
		"app":           s.appJSON(),
		"pull_requests": prs,
		"actions":       actions,
	}
}

func (s *Server) createCheckRun(c *call) reply {
	var b checkRunBody
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	if b.HeadSHA == nil || c.repo.commits[*b.HeadSHA] == nil {
		return errReply(http.StatusUnprocessableEntity, "No commit found for SHA: "+deref(b.HeadSHA))
	}
	cr := &CheckRun{ID: s.id(), HeadSHA: *b.HeadSHA, Status: "queued", StartedAt: now()}
	b.apply(cr)
	c.repo.checkRuns = append(c.repo.checkRuns, cr)
	return jsonReply(http.StatusCreated, s.checkRunJSON(c.repo, cr))
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *Server) findCheckRun(c *call) *CheckRun {
	id, _ := intParam(c, "check_run_id")
	for _, cr := range c.repo.checkRuns {
		if cr.ID == id {
			return cr
		}
	}
	return nil
}

func (s *Server) getCheckRun(c *call) reply {
	cr := s.findCheckRun(c)
	if cr == nil {
		return notFound()
	}
	return jsonReply(http.StatusOK, s.checkRunJSON(c.repo, cr))
}

func (s *Server) updateCheckRun(c *call) reply {
	cr := s.findCheckRun(c)
	if cr == nil {
		return notFound()
	}
	var b checkRunBody
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	b.apply(cr)
	cr.Updates++
	return jsonReply(http.StatusOK, s.checkRunJSON(c.repo, cr))
}

func (s *Server) listCheckRuns(c *call) reply {
	commit := c.repo.resolve(c.params["ref"])
	if commit == nil {
		return errReply(http.StatusUnprocessableEntity, "No commit found for SHA: "+c.params["ref"])
	}
	q := c.r.URL.Query()
	var runs []*CheckRun
	for _, cr := range c.repo.checkRuns {
		if cr.HeadSHA != commit.sha ||
			(q.Get("check_name") != "" && cr.Name != q.Get("check_name")) ||
			(q.Get("status") != "" && cr.Status != q.Get("status")) ||
			(q.Get("app_id") != "" && q.Get("app_id") != strconv.FormatInt(s.appID, 10)) {
			continue
		}
		runs = append(runs, cr)
	}
	slices.Reverse(runs) // newest first
	if q.Get("filter") != "all" {
		seen := make(map[string]bool)
		runs = slices.DeleteFunc(runs, func(cr *CheckRun) bool {
			dup := seen[cr.Name]
			seen[cr.Name] = true
			return dup
		})
	}
	rep := jsonReply(http.StatusOK, nil)
	lo, hi := s.paginate(c, len(runs), &rep)
	items := []any{}
	for _, cr := range runs[lo:hi] {
		items = append(items, s.checkRunJSON(c.repo, cr))
	}
	rep.body = map[string]any{"total_count": len(runs), "check_runs": items}
	return rep
}

// --- repository contents ---

// legacyPermission is the "permission" field GitHub derives from a role.
var legacyPermission = map[string]string{
	PermAdmin: "admin", PermMaintain: "write", PermWrite: "write",
	PermTriage: "read", PermRead: "read", PermNone: "none",
}

func (s *Server) getPermission(c *call) reply {
	login := c.params["username"]
	role, ok := c.repo.perms[strings.ToLower(login)]
	if !ok {
		role = PermRead
		if c.repo.opts.Private {
			role = PermNone
		}
	}
	return jsonReply(http.StatusOK, map[string]any{
		"permission": legacyPermission[role],
		"role_name":  role,
		"user":       s.userJSON(login),
	})
}

func (s *Server) commitJSON(r *repoState, cm *commitRec, withFiles bool) map[string]any {
	parents := []any{}
	for _, p := range cm.parents {
		parents = append(parents, map[string]any{"sha": p, "url": s.apiURL(r, "commits/"+p)})
	}
	who := map[string]any{"name": "Codertocat", "email": "codertocat@example.com", "date": ts(cm.at)}
	out := map[string]any{
		"sha":      cm.sha,
		"node_id":  "C_" + cm.sha,
		"url":      s.apiURL(r, "commits/"+cm.sha),
		"html_url": fmt.Sprintf("https://github.com/%s/commit/%s", r.fullName(), cm.sha),
		"commit": map[string]any{
			"message":   "commit " + cm.sha[:7],
			"author":    who,
			"committer": who,
			"tree":      map[string]any{"sha": treeSHA(cm.files), "url": s.apiURL(r, "git/trees/"+treeSHA(cm.files))},
		},
		"parents": parents,
	}
	if withFiles {
		var base map[string]string
		if len(cm.parents) > 0 {
			if p := r.commits[cm.parents[0]]; p != nil {
				base = p.files
			}
		}
		out["files"] = filesJSON(diff(base, cm.files))
	}
	return out
}

func filesJSON(changes []fileChange) []any {
	out := []any{}
	for _, f := range changes {
		out = append(out, map[string]any{
			"sha":       f.sha,
			"filename":  f.path,
			"status":    f.status,
			"additions": f.additions,
			"deletions": f.removals,
			"changes":   f.additions + f.removals,
		})
	}
	return out
}

func (s *Server) getCommit(c *call) reply {
	cm := c.repo.resolve(c.params["ref"])
	if cm == nil {
		return errReply(http.StatusUnprocessableEntity, "No commit found for SHA: "+c.params["ref"])
	}
	return jsonReply(http.StatusOK, s.commitJSON(c.repo, cm, true))
}

// ancestry lists the first-parent chain from head back until base
// (exclusive), and whether base was reached.
func ancestry(r *repoState, base, head *commitRec) ([]*commitRec, bool) {
	var chain []*commitRec
	seen := make(map[string]bool)
	for cm := head; cm != nil && !seen[cm.sha]; {
		if cm.sha == base.sha {
			slices.Reverse(chain)
			return chain, true
		}
		seen[cm.sha] = true
		chain = append(chain, cm)
		if len(cm.parents) == 0 {
			break
		}
		cm = r.commits[cm.parents[0]]
	}
	return nil, false
}

func (s *Server) compareCommits(c *call) reply {
	base, head := c.repo.resolve(c.params["base"]), c.repo.resolve(c.params["head"])
	if base == nil || head == nil {
		return notFound()
	}
	status, ahead := "identical", 0
	commits := []any{}
	if base.sha != head.sha {
		chain, ok := ancestry(c.repo, base, head)
		status = "ahead"
		if !ok {
			status, chain = "diverged", []*commitRec{head}
		}
		ahead = len(chain)
		for _, cm := range chain {
			commits = append(commits, s.commitJSON(c.repo, cm, false))
		}
	}
	return jsonReply(http.StatusOK, map[string]any{
		"url":               s.apiURL(c.repo, "compare/"+base.sha+"..."+head.sha),
		"html_url":          fmt.Sprintf("https://github.com/%s/compare/%s...%s", c.repo.fullName(), base.sha, head.sha),
		"status":            status,
		"ahead_by":          ahead,
		"behind_by":         0,
		"total_commits":     ahead,
		"base_commit":       s.commitJSON(c.repo, base, false),
		"merge_base_commit": s.commitJSON(c.repo, base, false),
		"commits":           commits,
		"files":             filesJSON(diff(base.files, head.files)),
	})
}

func (s *Server) getContent(c *call) reply {
	ref := c.r.URL.Query().Get("ref")
	if ref == "" {
		ref = c.repo.opts.DefaultBranch
	}
	cm := c.repo.resolve(ref)
	if cm == nil {
		return errReply(http.StatusNotFound, "No commit found for the ref "+ref)
	}
	p := strings.Trim(c.params["path"], "/")
	if content, ok := cm.files[p]; ok {
		return jsonReply(http.StatusOK, s.contentJSON(c.repo, ref, p, content, true))
	}
	var entries []any
	seen := make(map[string]bool)
	for f := range cm.files {
		rest, ok := strings.CutPrefix(f, p+"/")
		if !ok {
			continue
		}
		name, _, isDir := strings.Cut(rest, "/")
		if seen[name] {
			continue
		}
		seen[name] = true
		if isDir {
			entries = append(entries, map[string]any{"type": "dir", "name": name, "path": path.Join(p, name), "size": 0, "sha": treeSHA(nil)})
		} else {
			entries = append(entries, s.contentJSON(c.repo, ref, f, cm.files[f], false))
		}
	}
	if entries == nil {
		return notFound()
	}
	sort.Slice(entries, func(i, j int) bool {
		return entries[i].(map[string]any)["name"].(string) < entries[j].(map[string]any)["name"].(string)
	})
	return jsonReply(http.StatusOK, entries)
}

func (s *Server) contentJSON(r *repoState, ref, p, content string, withContent bool) map[string]any {
	out := map[string]any{
		"type":         "file",
		"name":         path.Base(p),
		"path":         p,
		"size":         len(content),
		"sha":          blobSHA(content),
		"url":          s.apiURL(r, "contents/"+p+"?ref="+url.QueryEscape(ref)),
		"html_url":     fmt.Sprintf("https://github.com/%s/blob/%s/%s", r.fullName(), ref, p),
		"git_url":      s.apiURL(r, "git/blobs/"+blobSHA(content)),
		"download_url": nil,
	}
	if withContent {
		// GitHub wraps the base64 at 60 characters.
		enc := base64.StdEncoding.EncodeToString([]byte(content))
		var b strings.Builder
		for len(enc) > 60 {
			b.WriteString(enc[:60] + "\n")
			enc = enc[60:]
		}
		b.WriteString(enc)
		out["encoding"] = "base64"
		out["content"] = b.String()
	}
	return out
}

func (s *Server) getTarball(c *call) reply {
	cm := c.repo.resolve(c.params["ref"])
	if cm == nil {
		return notFound()
	}
	loc := fmt.Sprintf("%s%s%s/%s/legacy.tar.gz/%s?token=%s", s.srv.URL, archivePrefix,
		url.PathEscape(c.repo.owner), url.PathEscape(c.repo.name), cm.sha, s.archiveToken)
	return reply{status: http.StatusFound, raw: []byte{}, header: http.Header{"Location": {loc}}}
}

// --- deployments ---

func (s *Server) deploymentJSON(r *repoState, d *Deployment) map[string]any {
	var payload any = map[string]any{}
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	url := s.apiURL(r, fmt.Sprintf("deployments/%d", d.ID))
	return map[string]any{
		"url":                    url,
		"id":                     d.ID,
		"node_id":                fmt.Sprintf("DE_%d", d.ID),
		"sha":                    d.SHA,
		"ref":                    d.Ref,
		"task":                   d.Task,
		"payload":                payload,
		"original_environment":   d.Environment,
		"environment":            d.Environment,
		"description":            d.Description,
		"creator":                s.userJSON(d.Creator),
		"created_at":             ts(d.CreatedAt),
		"updated_at":             ts(d.CreatedAt),
		"statuses_url":           url + "/statuses",
		"repository_url":         s.apiURL(r, ""),
		"transient_environment":  d.TransientEnvironment,
		"production_environment": d.ProductionEnvironment,
	}
}

// checksPass reports whether every latest check run on sha succeeded, as
// GitHub verifies before creating a deployment without required_contexts.
func checksPass(r *repoState, sha string) bool {
	latest := make(map[string]*CheckRun)
	for _, cr := range r.checkRuns {
		if cr.HeadSHA == sha {
			latest[cr.Name] = cr
		}
	}
	for _, cr := range latest {
		switch cr.Conclusion {
		case "success", "neutral", "skipped":
		default:
			return false
		}
	}
	return true
}

func (s *Server) createDeployment(c *call) reply {
	var b struct {
		Ref                   string          `json:"ref"`
		Task                  *string         `json:"task"`
		AutoMerge             *bool           `json:"auto_merge"`
		RequiredContexts      *[]string       `json:"required_contexts"`
		Payload               json.RawMessage `json:"payload"`
		Environment           *string         `json:"environment"`
		Description           *string         `json:"description"`
		TransientEnvironment  *bool           `json:"transient_environment"`
		ProductionEnvironment *bool           `json:"production_environment"`
	}
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	cm := c.repo.resolve(b.Ref)
	if cm == nil {
		return errReply(http.StatusUnprocessableEntity, "No ref found for: "+b.Ref)
	}
	if b.RequiredContexts == nil && !checksPass(c.repo, cm.sha) {
		return errReply(http.StatusConflict, "Conflict: Commit status checks failed for "+b.Ref+".")
	}
	d := &Deployment{
		ID: s.id(), Ref: b.Ref, SHA: cm.sha, Task: "deploy", Environment: "production",
		Payload: b.Payload, Creator: s.login(c), CreatedAt: now(),
	}
	if b.Task != nil {
		d.Task = *b.Task
	}
	if b.Environment != nil {
		d.Environment = *b.Environment
	}
	d.Description = deref(b.Description)
	if b.TransientEnvironment != nil {
		d.TransientEnvironment = *b.TransientEnvironment
	}
	d.ProductionEnvironment = d.Environment == "production"
	if b.ProductionEnvironment != nil {
		d.ProductionEnvironment = *b.ProductionEnvironment
	}
	c.repo.deployments = append(c.repo.deployments, d)
	return jsonReply(http.StatusCreated, s.deploymentJSON(c.repo, d))
}

func (s *Server) listDeployments(c *call) reply {
	q := c.r.URL.Query()
	var out []*Deployment
	for _, d := range slices.Backward(c.repo.deployments) {
		if (q.Get("sha") != "" && q.Get("sha") != d.SHA) ||
			(q.Get("ref") != "" && q.Get("ref") != d.Ref) ||
			(q.Get("task") != "" && q.Get("task") != d.Task) ||
			(q.Get("environment") != "" && q.Get("environment") != d.Environment) {
			continue
		}
		out = append(out, d)
	}
	rep := jsonReply(http.StatusOK, nil)
	lo, hi := s.paginate(c, len(out), &rep)
	items := []any{}
	for _, d := range out[lo:hi] {
		items = append(items, s.deploymentJSON(c.repo, d))
	}
	rep.body = items
	return rep
}

func (s *Server) findDeployment(c *call) *Deployment {
	id, _ := intParam(c, "deployment_id")
	for _, d := range c.repo.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) statusJSON(r *repoState, d *Deployment, st *DeploymentStatus) map[string]any {
	durl := s.apiURL(r, fmt.Sprintf("deployments/%d", d.ID))
	return map[string]any{
		"url":             fmt.Sprintf("%s/statuses/%d", durl, st.ID),
		"id":              st.ID,
		"node_id":         fmt.Sprintf("DES_%d", st.ID),
		"state":           st.State,
		"creator":         s.userJSON(st.Creator),
		"description":     st.Description,
		"environment":     st.Environment,
		"target_url":      st.TargetURL,
		"log_url":         st.LogURL,
		"environment_url": st.EnvironmentURL,
		"created_at":      ts(st.CreatedAt),
		"updated_at":      ts(st.CreatedAt),
		"deployment_url":  durl,
		"repository_url":  s.apiURL(r, ""),
	}
}

func (s *Server) createDeploymentStatus(c *call) reply {
	d := s.findDeployment(c)
	if d == nil {
		return notFound()
	}
	var b struct {
		State          string  `json:"state"`
		TargetURL      string  `json:"target_url"`
		LogURL         string  `json:"log_url"`
		Description    string  `json:"description"`
		Environment    *string `json:"environment"`
		EnvironmentURL string  `json:"environment_url"`
		AutoInactive   *bool   `json:"auto_inactive"`
	}
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	st := &DeploymentStatus{
		ID: s.id(), State: b.State, Description: b.Description, Environment: d.Environment,
		EnvironmentURL: b.EnvironmentURL, LogURL: b.LogURL, TargetURL: b.TargetURL,
		Creator: s.login(c), CreatedAt: now(),
	}
	if b.LogURL == "" {
		st.LogURL = b.TargetURL
	}
	if b.Environment != nil {
		d.Environment = *b.Environment
		st.Environment = *b.Environment
	}
	c.repo.statuses[d.ID] = append(c.repo.statuses[d.ID], st)
	if b.State == "success" && (b.AutoInactive == nil || *b.AutoInactive) {
		s.inactivate(c, d)
	}
	return jsonReply(http.StatusCreated, s.statusJSON(c.repo, d, st))
}

// inactivate adds an inactive status to the earlier successful,
// non-transient, non-production deployments of d's environment.
func (s *Server) inactivate(c *call, d *Deployment) {
	for _, o := range c.repo.deployments {
		sts := c.repo.statuses[o.ID]
		if o.ID == d.ID || o.Environment != d.Environment || o.TransientEnvironment ||
			o.ProductionEnvironment || len(sts) == 0 || sts[len(sts)-1].State != "success" {
			continue
		}
		c.repo.statuses[o.ID] = append(sts, &DeploymentStatus{
			ID: s.id(), State: "inactive", Environment: o.Environment, Creator: s.login(c), CreatedAt: now(),
		})
	}
}

func (s *Server) listDeploymentStatuses(c *call) reply {
	d := s.findDeployment(c)
	if d == nil {
		return notFound()
	}
	sts := slices.Clone(c.repo.statuses[d.ID])
	slices.Reverse(sts)
	rep := jsonReply(http.StatusOK, nil)
	lo, hi := s.paginate(c, len(sts), &rep)
	items := []any{}
	for _, st := range sts[lo:hi] {
		items = append(items, s.statusJSON(c.repo, d, st))
	}
	rep.body = items
	return rep
}

// --- issues and reactions ---

func (s *Server) commentJSON(r *repoState, cm *Comment) map[string]any {
	assoc := "NONE"
	if strings.EqualFold(cm.User, r.owner) {
		assoc = "OWNER"
	}
	return map[string]any{
		"id":                 cm.ID,
		"node_id":            fmt.Sprintf("IC_%d", cm.ID),
		"url":                s.apiURL(r, fmt.Sprintf("issues/comments/%d", cm.ID)),
		"html_url":           fmt.Sprintf("https://github.com/%s/pull/%d#issuecomment-%d", r.fullName(), cm.Issue, cm.ID),
		"issue_url":          s.apiURL(r, fmt.Sprintf("issues/%d", cm.Issue)),
		"body":               cm.Body,
		"user":               s.userJSON(cm.User),
		"created_at":         ts(cm.CreatedAt),
		"updated_at":         ts(cm.UpdatedAt),
		"author_association": assoc,
	}
}

func (s *Server) listComments(c *call) reply {
	n, _ := intParam(c, "issue_number")
	if c.repo.prs[int(n)] == nil {
		return notFound()
	}
	all := s.commentsOf(c.repo, int(n))
	if since := c.r.URL.Query().Get("since"); since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err == nil {
			all = slices.DeleteFunc(all, func(cm Comment) bool { return cm.UpdatedAt.Before(t) })
		}
	}
	rep := jsonReply(http.StatusOK, nil)
	lo, hi := s.paginate(c, len(all), &rep)
	items := []any{}
	for i := range all[lo:hi] {
		items = append(items, s.commentJSON(c.repo, &all[lo+i]))
	}
	rep.body = items
	return rep
}

func (s *Server) createComment(c *call) reply {
	n, _ := intParam(c, "issue_number")
	if c.repo.prs[int(n)] == nil {
		return notFound()
	}
	var b struct {
		Body string `json:"body"`
	}
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	t := now()
	cm := &Comment{ID: s.id(), Issue: int(n), User: s.login(c), Body: b.Body, CreatedAt: t, UpdatedAt: t}
	s.comments[cm.ID] = &commentRec{repo: c.repo, c: cm, seq: s.id()}
	return jsonReply(http.StatusCreated, s.commentJSON(c.repo, cm))
}

func (s *Server) findComment(c *call) *Comment {
	id, _ := intParam(c, "comment_id")
	rec := s.comments[id]
	if rec == nil || rec.repo != c.repo {
		return nil
	}
	return rec.c
}

func (s *Server) updateComment(c *call) reply {
	cm := s.findComment(c)
	if cm == nil {
		return notFound()
	}
	var b struct {
		Body string `json:"body"`
	}
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	cm.Body = b.Body
	cm.UpdatedAt = now()
	cm.Edits++
	return jsonReply(http.StatusOK, s.commentJSON(c.repo, cm))
}

func (s *Server) createReaction(c *call) reply {
	cm := s.findComment(c)
	if cm == nil {
		return notFound()
	}
	var b struct {
		Content string `json:"content"`
	}
	if rep := decode(c, &b); rep != nil {
		return *rep
	}
	user := s.login(c)
	reactionJSON := func(rr *reactionRec) map[string]any {
		return map[string]any{
			"id": rr.id, "node_id": fmt.Sprintf("REA_%d", rr.id), "user": s.userJSON(rr.user),
			"content": rr.content, "created_at": ts(rr.at),
		}
	}
	for _, rr := range s.reactions[cm.ID] {
		if rr.user == user && rr.content == b.Content {
			return jsonReply(http.StatusOK, reactionJSON(rr))
		}
	}
	rr := &reactionRec{id: s.id(), user: user, content: b.Content, at: now()}
	s.reactions[cm.ID] = append(s.reactions[cm.ID], rr)
	return jsonReply(http.StatusCreated, reactionJSON(rr))
}

// --- pulls ---

func (s *Server) getPull(c *call) reply {
	n, _ := intParam(c, "pull_number")
	pr := c.repo.prs[int(n)]
	if pr == nil {
		return notFound()
	}
	r := c.repo
	baseSHA := ""
	if cm := r.defaultHead(); cm != nil {
		baseSHA = cm.sha
	}
	side := func(r *repoState, ref, sha string) map[string]any {
		return map[string]any{
			"label": r.owner + ":" + ref, "ref": ref, "sha": sha,
			"user": s.userJSON(r.owner), "repo": s.repoJSON(r),
		}
	}
	headRepo := r
	if pr.headRepo != nil {
		headRepo = pr.headRepo
	}
	return jsonReply(http.StatusOK, map[string]any{
		"url":                   s.apiURL(r, fmt.Sprintf("pulls/%d", pr.number)),
		"id":                    int64(pr.number) + r.opts.ID*1000,
		"node_id":               fmt.Sprintf("PR_%d", pr.number),
		"html_url":              fmt.Sprintf("https://github.com/%s/pull/%d", r.fullName(), pr.number),
		"issue_url":             s.apiURL(r, fmt.Sprintf("issues/%d", pr.number)),
		"number":                pr.number,
		"state":                 "open",
		"locked":                false,
		"title":                 fmt.Sprintf("Pull request %d", pr.number),
		"user":                  s.userJSON(r.owner),
		"body":                  "",
		"created_at":            ts(pr.at),
		"updated_at":            ts(pr.updated),
		"closed_at":             nil,
		"merged_at":             nil,
		"merge_commit_sha":      nil,
		"head":                  side(headRepo, pr.headRef, pr.headSHA),
		"base":                  side(r, r.opts.DefaultBranch, baseSHA),
		"draft":                 false,
		"merged":                false,
		"mergeable":             true,
		"mergeable_state":       "clean",
		"author_association":    "OWNER",
		"comments":              len(s.commentsOf(r, pr.number)),
		"maintainer_can_modify": false,
	})
}

func (s *Server) listPullFiles(c *call) reply {
	n, _ := intParam(c, "pull_number")
	pr := c.repo.prs[int(n)]
	if pr == nil {
		return notFound()
	}
	var base map[string]string
	if cm := c.repo.defaultHead(); cm != nil {
		base = cm.files
	}
	changes := diff(base, c.repo.commits[pr.headSHA].files)
	rep := jsonReply(http.StatusOK, nil)
	lo, hi := s.paginate(c, len(changes), &rep)
	rep.body = filesJSON(changes[lo:hi])
	return rep
}
