package bot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
)

// Finding our check run or deployment again (before creating one, so a
// retry never doubles it) must see runs that are not the newest of their
// name and items past the first page.
func TestLookupsSeeOlderRunsAndEveryPage(t *testing.T) {
	t.Parallel()
	const (
		repo = "Codertocat/Hello-World"
		sha  = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	)
	gh := githubtest.NewServer(t, githubtest.WithToken("workflow-token"))
	gh.AddRepo(repo, githubtest.RepoOpts{})
	gh.SetCommit(repo, sha, map[string]string{"README.md": "x\n"})
	c := ghapp.TokenClient(gh.URL(), "workflow-token", ghapp.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx := context.Background()
	var firstRun, firstDeployment int64
	for i := range 101 {
		r, _, err := c.Checks.CreateCheckRun(ctx, "Codertocat", "Hello-World", github.CreateCheckRunOptions{
			Name: "sluice / hello", HeadSHA: sha, ExternalID: github.String(fmt.Sprintf("hello-%03d", i))})
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := c.Repositories.CreateDeployment(ctx, "Codertocat", "Hello-World", &github.DeploymentRequest{
			Ref: github.String(sha), Environment: github.String("pr-1"), Description: github.String(fmt.Sprintf("hello-%03d", i)),
			RequiredContexts: &[]string{}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstRun, firstDeployment = r.GetID(), d.GetID()
		}
	}
	id, err := findCheckRun(ctx, c, "Codertocat", "Hello-World", sha, "sluice / hello", "hello-000")
	if err != nil || id != firstRun {
		t.Fatalf("findCheckRun = %d, %v; want %d", id, err, firstRun)
	}
	id, err = findDeployment(ctx, c, "Codertocat", "Hello-World", sha, "pr-1", "hello-000")
	if err != nil || id != firstDeployment {
		t.Fatalf("findDeployment = %d, %v; want %d", id, err, firstDeployment)
	}
}
