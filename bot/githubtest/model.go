package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// RepoOpts describes a repository for AddRepo.
type RepoOpts struct {
	// DefaultBranch defaults to "main".
	DefaultBranch string
	// InstallationID is the App installation that can see the repository;
	// 0 means the App is not installed on it (only WithToken's token works).
	InstallationID int64
	// ID is the repository id; 0 picks one.
	ID int64
	// Private changes what a non-collaborator's permission reads as: "none"
	// instead of "read".
	Private bool
}

// Permission levels accepted by SetPermission, GitHub's role names. The
// permission endpoint answers the role in "role_name" and GitHub's legacy
// level in "permission" (the only field go-github v60 decodes).
const (
	// PermAdmin reads as permission "admin".
	PermAdmin = "admin"
	// PermMaintain reads as permission "write".
	PermMaintain = "maintain"
	// PermWrite reads as permission "write".
	PermWrite = "write"
	// PermTriage reads as permission "read".
	PermTriage = "triage"
	// PermRead reads as permission "read".
	PermRead = "read"
	// PermNone reads as permission "none".
	PermNone = "none"
)

// CheckRun is a check run as stored by the fake.
type CheckRun struct {
	ID         int64
	Name       string
	HeadSHA    string
	ExternalID string
	DetailsURL string
	// Status is queued, in_progress, completed (or GitHub's other values).
	Status string
	// Conclusion is "" until the run is completed.
	Conclusion  string
	StartedAt   time.Time
	CompletedAt time.Time
	Output      CheckRunOutput
	Actions     []CheckRunAction
	// Updates counts the PATCHes applied.
	Updates int
}

// CheckRunOutput is a check run's output; Annotations accumulate over
// updates, as on GitHub.
type CheckRunOutput struct {
	Title       string       `json:"title"`
	Summary     string       `json:"summary"`
	Text        string       `json:"text,omitempty"`
	Annotations []Annotation `json:"annotations,omitempty"`
}

// Annotation is a check run annotation.
type Annotation struct {
	Path            string `json:"path"`
	StartLine       int    `json:"start_line"`
	EndLine         int    `json:"end_line"`
	StartColumn     int    `json:"start_column,omitempty"`
	EndColumn       int    `json:"end_column,omitempty"`
	AnnotationLevel string `json:"annotation_level"`
	Message         string `json:"message"`
	Title           string `json:"title,omitempty"`
	RawDetails      string `json:"raw_details,omitempty"`
}

// CheckRunAction is a check run button.
type CheckRunAction struct {
	Label       string `json:"label"`
	Description string `json:"description"`
	Identifier  string `json:"identifier"`
}

// Comment is an issue or pull request comment.
type Comment struct {
	ID    int64
	Issue int
	// User is the author's login ("sluice[bot]" for the App).
	User      string
	Body      string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Edits counts the updates applied.
	Edits int
}

// Deployment is a deployment as stored by the fake.
type Deployment struct {
	ID                    int64
	Ref                   string
	SHA                   string
	Task                  string
	Environment           string
	Description           string
	Payload               json.RawMessage
	TransientEnvironment  bool
	ProductionEnvironment bool
	Creator               string
	CreatedAt             time.Time
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	Description    string
	Environment    string
	EnvironmentURL string
	LogURL         string
	TargetURL      string
	Creator        string
	CreatedAt      time.Time
}

type repoState struct {
	owner, name string
	opts        RepoOpts
	branches    map[string]string
	commits     map[string]*commitRec
	prs         map[int]*prRec
	perms       map[string]string
	checkRuns   []*CheckRun
	deployments []*Deployment
	statuses    map[int64][]*DeploymentStatus
}

func (r *repoState) key() string      { return strings.ToLower(r.owner + "/" + r.name) }
func (r *repoState) fullName() string { return r.owner + "/" + r.name }

type commitRec struct {
	sha     string
	files   map[string]string
	parents []string
	at      time.Time
}

type prRec struct {
	number  int
	headSHA string
	headRef string
	// headRepo is the fork the head lives in; nil for a branch of the
	// repository itself.
	headRepo *repoState
	at       time.Time
	// updated is when the head last moved (GitHub's updated_at).
	updated time.Time
}

type commentRec struct {
	repo *repoState
	c    *Comment
	seq  int64 // order of creation
}

type reactionRec struct {
	id      int64
	user    string
	content string
	at      time.Time
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// repo returns the repository or fails the test. s.mu held.
func (s *Server) repo(full string) *repoState {
	r := s.repos[strings.ToLower(full)]
	if r == nil {
		s.t.Fatalf("githubtest: repository %q was not added (AddRepo)", full)
	}
	return r
}

// id returns a fresh id. s.mu held.
func (s *Server) id() int64 {
	s.nextID++
	for s.comments[s.nextID] != nil {
		s.nextID++
	}
	return s.nextID
}

// AddRepo adds repository fullName ("owner/name"). Adding it again
// replaces its options and keeps its contents.
func (s *Server) AddRepo(fullName string, o RepoOpts) {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		s.t.Fatalf("githubtest: AddRepo(%q): want owner/name", fullName)
	}
	if o.DefaultBranch == "" {
		o.DefaultBranch = "main"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.ID == 0 {
		o.ID = s.id()
	}
	if r := s.repos[strings.ToLower(fullName)]; r != nil {
		r.opts = o
		return
	}
	s.repos[strings.ToLower(fullName)] = &repoState{
		owner: owner, name: name, opts: o,
		branches: make(map[string]string),
		commits:  make(map[string]*commitRec),
		prs:      make(map[int]*prRec),
		perms:    make(map[string]string),
		statuses: make(map[int64][]*DeploymentStatus),
	}
}

// SetCommit stores commit sha (40 lower-case hex digits) with its files
// (path → content; a content starting with "#!" is executable in the
// tarball). It replaces an earlier commit with that sha.
func (s *Server) SetCommit(repo, sha string, files map[string]string) {
	if !shaRE.MatchString(sha) {
		s.t.Fatalf("githubtest: SetCommit: %q is not a 40-digit lower-case hex SHA", sha)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(repo)
	fs := make(map[string]string, len(files))
	for p, c := range files {
		fs[strings.TrimPrefix(p, "/")] = c
	}
	var parents []string
	if old := r.commits[sha]; old != nil {
		parents = old.parents
	}
	r.commits[sha] = &commitRec{sha: sha, files: fs, parents: parents, at: now()}
}

// SetParents records the parents of commit sha (used by get-commit's file
// list and compare-commits' ancestry).
func (s *Server) SetParents(repo, sha string, parents ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.commit(repo, sha)
	for _, p := range parents {
		s.commit(repo, p)
	}
	c.parents = slices.Clone(parents)
}

// commit returns a stored commit or fails the test. s.mu held.
func (s *Server) commit(repo, sha string) *commitRec {
	c := s.repo(repo).commits[sha]
	if c == nil {
		s.t.Fatalf("githubtest: commit %s of %s was not set (SetCommit)", sha, repo)
	}
	return c
}

// SetBranch points branch at commit sha (which must be set).
func (s *Server) SetBranch(repo, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commit(repo, sha)
	s.repo(repo).branches[branch] = sha
}

// SetPR opens (or moves) pull request number with head headRef at headSHA
// (which must be set); its base is the default branch. headRef becomes a
// branch at headSHA.
func (s *Server) SetPR(repo string, number int, headSHA, headRef string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commit(repo, headSHA)
	r := s.repo(repo)
	r.branches[headRef] = headSHA
	s.setPR(r, number, headSHA, headRef, nil)
}

// SetForkPR opens (or moves) pull request number of repo whose head is
// branch headRef of fork headRepo (added with AddRepo) at headSHA. As on
// GitHub, the head commit is readable through the base repository (its
// tarball and contents), so headSHA must be set on repo.
func (s *Server) SetForkPR(repo string, number int, headRepo, headSHA, headRef string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commit(repo, headSHA)
	s.setPR(s.repo(repo), number, headSHA, headRef, s.repo(headRepo))
}

// PRUpdatedAt returns when pull request number of repo last moved its
// head (its updated_at), as a pull_request webhook would carry it.
func (s *Server) PRUpdatedAt(repo string, number int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.repo(repo).prs[number]
	if pr == nil {
		s.t.Fatalf("githubtest: pull request %d of %s was not set", number, repo)
	}
	return pr.updated
}

// setPR: s.mu held.
func (s *Server) setPR(r *repoState, number int, headSHA, headRef string, fork *repoState) {
	t := now()
	if pr := r.prs[number]; pr != nil {
		if pr.headSHA != headSHA {
			pr.updated = t
		}
		pr.headSHA, pr.headRef, pr.headRepo = headSHA, headRef, fork
		return
	}
	r.prs[number] = &prRec{number: number, headSHA: headSHA, headRef: headRef, headRepo: fork, at: t, updated: t}
}

// SetPermission sets login's role on repo: admin, maintain, write,
// triage, read or none (the Perm* constants). A login never set reads as
// "read" on a public repository and "none" on a private one.
func (s *Server) SetPermission(repo, login, perm string) {
	switch perm {
	case PermAdmin, PermMaintain, PermWrite, PermTriage, PermRead, PermNone:
	default:
		s.t.Fatalf("githubtest: SetPermission: unknown permission %q", perm)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(repo).perms[strings.ToLower(login)] = perm
}

// AddComment stores a comment written by someone else (c.User, c.Body) on
// issue or pull request issue, for example the command comment of a
// webhook fixture so that reactions to it succeed. c.ID 0 picks an id.
// It returns the stored comment.
func (s *Server) AddComment(repo string, issue int, c Comment) Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(repo)
	if c.ID == 0 {
		c.ID = s.id()
	}
	if s.comments[c.ID] != nil {
		s.t.Fatalf("githubtest: AddComment: comment %d exists", c.ID)
	}
	c.Issue = issue
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now()
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	stored := c
	s.comments[c.ID] = &commentRec{repo: r, c: &stored, seq: s.id()}
	return c
}

// CheckRuns returns the check runs created on repo, oldest first.
func (s *Server) CheckRuns(repo string) []CheckRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CheckRun
	for _, cr := range s.repo(repo).checkRuns {
		out = append(out, copyCheckRun(cr))
	}
	return out
}

func copyCheckRun(cr *CheckRun) CheckRun {
	c := *cr
	c.Output.Annotations = slices.Clone(cr.Output.Annotations)
	c.Actions = slices.Clone(cr.Actions)
	return c
}

// Comments returns the comments on issue or pull request issue of repo,
// oldest first.
func (s *Server) Comments(repo string, issue int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commentsOf(s.repo(repo), issue)
}

// commentsOf: s.mu held.
func (s *Server) commentsOf(r *repoState, issue int) []Comment {
	var recs []*commentRec
	for _, rec := range s.comments {
		if rec.repo == r && rec.c.Issue == issue {
			recs = append(recs, rec)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	var out []Comment
	for _, rec := range recs {
		out = append(out, *rec.c)
	}
	return out
}

// Reactions returns the reaction contents ("eyes", "rocket", ...) on
// comment commentID, in the order they were added.
func (s *Server) Reactions(commentID int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, rr := range s.reactions[commentID] {
		out = append(out, rr.content)
	}
	return out
}

// Deployments returns repo's deployments, oldest first.
func (s *Server) Deployments(repo string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Deployment
	for _, d := range s.repo(repo).deployments {
		c := *d
		c.Payload = slices.Clone(d.Payload)
		out = append(out, c)
	}
	return out
}

// DeploymentStatuses returns the statuses of deployment id, oldest first.
func (s *Server) DeploymentStatuses(repo string, id int64) []DeploymentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeploymentStatus
	for _, st := range s.repo(repo).statuses[id] {
		out = append(out, *st)
	}
	return out
}

// resolve maps a ref (full SHA, unique SHA prefix of 7+ digits, branch
// name or refs/heads/ name) to a stored commit. s.mu held.
func (r *repoState) resolve(ref string) *commitRec {
	ref = strings.TrimPrefix(ref, "refs/heads/")
	if c := r.commits[ref]; c != nil {
		return c
	}
	if sha, ok := r.branches[ref]; ok {
		return r.commits[sha]
	}
	if len(ref) >= 7 && len(ref) < 40 {
		var found *commitRec
		for sha, c := range r.commits {
			if strings.HasPrefix(sha, ref) {
				if found != nil {
					return nil
				}
				found = c
			}
		}
		return found
	}
	return nil
}

// defaultHead is the commit the default branch points at, or nil.
func (r *repoState) defaultHead() *commitRec {
	if sha, ok := r.branches[r.opts.DefaultBranch]; ok {
		return r.commits[sha]
	}
	return nil
}

// blobSHA is git's object id of a file's content.
func blobSHA(content string) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write([]byte(content))
	return hex.EncodeToString(h.Sum(nil))
}

// treeSHA is a digest of a commit's files: equal trees give equal digests.
// It is not git's tree id.
func treeSHA(files map[string]string) string {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha1.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%s\n", p, blobSHA(files[p]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileChange is one entry of a diff.
type fileChange struct {
	path, status        string // added, removed, modified
	additions, removals int
	sha                 string
}

// diff lists the files that differ from old to new, by path.
func diff(old, new map[string]string) []fileChange {
	var out []fileChange
	for p, c := range new {
		o, had := old[p]
		switch {
		case !had:
			out = append(out, fileChange{path: p, status: "added", additions: lines(c), sha: blobSHA(c)})
		case o != c:
			out = append(out, fileChange{path: p, status: "modified", additions: lines(c), removals: lines(o), sha: blobSHA(c)})
		}
	}
	for p, o := range old {
		if _, ok := new[p]; !ok {
			out = append(out, fileChange{path: p, status: "removed", removals: lines(o), sha: blobSHA(o)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func lines(s string) int {
	if s == "" {
		return 0
	}
	return strings.Count(strings.TrimSuffix(s, "\n"), "\n") + 1
}

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }
