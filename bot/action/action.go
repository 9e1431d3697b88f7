package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/sluicehq/sluice/bot/remote"
	"github.com/sluicehq/sluice/rollout"
)

// DefaultIDTokenTimeout bounds the request for an OIDC ID token.
const DefaultIDTokenTimeout = 30 * time.Second

// OpenJournal opens (creating it when needed) the journal event mode keeps
// in dir, and returns it with what closes it. cmd/sluice passes one that
// opens the bbolt store.
type OpenJournal func(dir string) (rollout.Journal, io.Closer, error)

// Config is what Run needs of the process.
type Config struct {
	// Getenv looks a variable up (os.Getenv); required.
	Getenv func(string) string
	// Environ is the whole environment (os.Environ), searched for unknown
	// INPUT_* variables.
	Environ []string
	// Stdout receives workflow commands (::error, ::add-mask) and a short
	// human account; required.
	Stdout io.Writer
	// Logger logs progress; nil means slog.Default().
	Logger *slog.Logger
	// HTTPClient asks the runner for ID tokens; nil means a client with
	// DefaultIDTokenTimeout.
	HTTPClient *http.Client
	// OpenJournal is required by event mode only.
	OpenJournal OpenJournal
}

// Failure is a step failure reported by annotations of its own (a failed
// version's reason, a manifest's problems) rather than one error line.
type Failure struct {
	Annotations []Annotation
}

func (f *Failure) Error() string {
	if len(f.Annotations) == 0 {
		return "failed"
	}
	return f.Annotations[0].Message
}

// Run runs one step and returns its exit code: 0 when it did its job (in
// event mode, also when the command it ran was refused: that is answered on
// the pull request), 1 otherwise, after printing why on Stdout as ::error
// lines. A bad input is reported before anything is sent anywhere.
func Run(ctx context.Context, cfg Config) int {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultIDTokenTimeout}
	}
	err := run(ctx, cfg)
	if err == nil {
		return 0
	}
	var f *Failure
	if errors.As(err, &f) && len(f.Annotations) > 0 {
		for _, a := range f.Annotations {
			fmt.Fprintln(cfg.Stdout, a.String())
		}
		return 1
	}
	fmt.Fprintln(cfg.Stdout, errorLine(err))
	return 1
}

// step is one run of the action.
type step struct {
	cfg   Config
	in    Inputs
	r     Runner
	eng   *remote.Engine
	log   *slog.Logger
	token string
}

func run(ctx context.Context, cfg Config) error {
	in, err := ParseInputs(cfg.Getenv, cfg.Environ)
	if err != nil {
		return err
	}
	s := &step{cfg: cfg, in: in, r: ReadRunner(cfg.Getenv), log: cfg.Logger, token: in.Token}
	if in.OIDC {
		tok, err := RequestIDToken(ctx, cfg.HTTPClient, s.r, in.Server)
		if err != nil {
			return err
		}
		// Keep the ID token out of the run's log, as the runner does for
		// secrets.
		fmt.Fprintln(cfg.Stdout, "::add-mask::"+tok)
		s.token = tok
	}
	s.eng = remote.New(in.Server, s.token)
	switch in.Mode {
	case ModeEvent:
		return s.event(ctx)
	default:
		return s.deploy(ctx)
	}
}

// serverError makes an error of the sluice API one clear line: the
// server's own message, or what kept the request from reaching it.
func (s *step) serverError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cannot reach the sluice server at %s: %v", s.in.Server, ue.Err)
	}
	return err
}

// writeOutputs writes the step's outputs, logging (not failing on) a
// runner file that cannot be written: the outcome stands either way.
func (s *step) writeOutputs(outs ...Output) {
	if err := WriteOutputs(s.r.OutputFile, outs...); err != nil {
		s.log.Error("write step outputs", "err", err)
	}
}

func (s *step) writeSummary(md string) {
	if err := AppendSummary(s.r.SummaryFile, md); err != nil {
		s.log.Error("write step summary", "err", err)
	}
}

// tempDir is where the step keeps its own files: $RUNNER_TEMP (cleaned by
// the runner after the job) or the system's temporary directory.
func (s *step) tempDir() string {
	if s.r.Temp != "" {
		return s.r.Temp
	}
	return os.TempDir()
}
