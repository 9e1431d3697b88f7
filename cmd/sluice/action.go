package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/bot/action"
	"github.com/sluicehq/sluice/bot/cli"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/store"
)

// actionCmd is the GitHub Action's step (action.yml runs it). Its inputs
// come from the environment as the action maps them (INPUT_*), beside
// the runner's own variables, so it takes no flags.
type actionCmd struct{}

// Run runs the step and exits with its code: the step has already said
// why on stdout, as the runner's ::error lines.
func (c *actionCmd) Run(env *cli.Env) error {
	level := slog.LevelInfo
	if os.Getenv("RUNNER_DEBUG") == "1" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	code := action.Run(env.Ctx, action.Config{
		Getenv:  os.Getenv,
		Environ: os.Environ(),
		Stdout:  env.Stdout,
		Logger:  log,
		OpenJournal: func(dir string) (rollout.Journal, io.Closer, error) {
			db, err := store.Open(filepath.Join(dir, "sluice.db"), store.WithLogger(log))
			if err != nil {
				return nil, nil, err
			}
			return db, db, nil
		},
	})
	if code != 0 {
		os.Exit(code)
	}
	return nil
}
