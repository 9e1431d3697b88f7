package cli

import (
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
)

// ServiceCmd (sluice service set-repo) manages services themselves, as
// the admin.
type ServiceCmd struct {
	SetRepo ServiceSetRepoCmd `cmd:"" name:"set-repo" help:"Assign a service to the repository whose tokens, workflows and App events may change it (admin --token)."`
}

// ServiceSetRepoCmd assigns a service to a repository; --none assigns it
// to none, so only the admin may change it. A service that does not exist
// yet is created without versions.
type ServiceSetRepoCmd struct {
	ClientFlags
	Service string `arg:"" help:"Service name."`
	Repo    string `arg:"" optional:"" help:"GitHub repository OWNER/NAME."`
	None    bool   `help:"Assign the service to no repository: only the admin may change it."`
}

// Run calls PUT /api/v1/services/SERVICE/repo.
func (c *ServiceSetRepoCmd) Run(env *Env) error {
	switch {
	case c.None && c.Repo != "":
		return fmt.Errorf("give a repository or --none, not both")
	case !c.None && c.Repo == "":
		return fmt.Errorf("name the repository (OWNER/NAME), or --none")
	}
	var raw []byte
	err := c.client().do(env.Ctx, wire.SetRepo, []string{c.Service}, nil, wire.RepoBody{Repo: &c.Repo}, "", &raw)
	if err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var st rollout.ServiceStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	owner := st.Repo
	if owner == "" {
		owner = "no repository (the admin only)"
	}
	_, err = fmt.Fprintf(env.Stdout, "%s belongs to %s\n", st.Name, owner)
	return err
}
