package action

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout"
)

// Mode is what the step does; the "mode" input.
type Mode string

const (
	// ModeDeploy deploys the source directory and waits for the outcome.
	ModeDeploy Mode = "deploy"
	// ModeEvent runs the workflow's event through sluice's GitHub bot.
	ModeEvent Mode = "event"
)

// Defaults of the optional inputs, as action.yml declares them.
const (
	DefaultSource  = "."
	DefaultTimeout = 15 * time.Minute
)

// InputNames are the action's inputs, as action.yml declares them. Each
// reaches the step as INPUT_<NAME>, upper case with '-' as '_'.
var InputNames = []string{"server", "token", "oidc", "service", "source", "strategy", "traffic", "wait", "timeout", "mode", "github-token"}

// Inputs are the validated inputs of one step.
type Inputs struct {
	// Server is the sluice server's URL, without a trailing slash. With
	// OIDC it is also the ID token's audience.
	Server string
	// Token is the API bearer token; "" when OIDC is set.
	Token string
	// OIDC asks the runner for an ID token instead of using Token.
	OIDC bool
	// Service to deploy; "" means the one service sluice.yaml declares.
	Service string
	// Source is the directory to deploy, as given (relative to the
	// workspace unless absolute).
	Source string
	// Strategy is full or canary.
	Strategy rollout.Strategy
	// Traffic is the canary's share in percent once it is normal; -1 when
	// not given (traffic is left as the strategy leaves it).
	Traffic int
	// Wait waits for the version to be normal or failed.
	Wait bool
	// Timeout bounds the wait (deploy) or the handling (event).
	Timeout time.Duration
	// Mode is deploy or event.
	Mode Mode
	// GitHubToken is the workflow's token, used by event mode.
	GitHubToken string
}

// InputError is a missing, unknown or invalid input: nothing was sent
// anywhere. Its message names the input and what it must be.
type InputError struct {
	// Input is the input's name as action.yml spells it.
	Input string
	// Problem completes `input "<Input>" ...`.
	Problem string
}

func (e *InputError) Error() string { return fmt.Sprintf("input %q %s", e.Input, e.Problem) }

// EnvName is the variable an input reaches the step in: INPUT_ and the
// name upper-cased with '-' as '_' ("github-token" → INPUT_GITHUB_TOKEN).
func EnvName(input string) string {
	return "INPUT_" + strings.ToUpper(strings.ReplaceAll(input, "-", "_"))
}

// ParseInputs reads and validates the inputs. getenv looks a variable up;
// environ lists the whole environment (KEY=VALUE), in which any INPUT_*
// variable that is not one of InputNames is an unknown input. Values are
// trimmed of surrounding white space. The first problem found is returned
// as an *InputError.
func ParseInputs(getenv func(string) string, environ []string) (Inputs, error) {
	known := map[string]bool{}
	for _, n := range InputNames {
		known[EnvName(n)] = true
	}
	var unknown []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		// A runner that sets INPUT_* itself keeps '-' in the name.
		if norm := strings.ToUpper(strings.ReplaceAll(k, "-", "_")); strings.HasPrefix(norm, "INPUT_") && !known[norm] {
			unknown = append(unknown, strings.ToLower(strings.TrimPrefix(k, "INPUT_")))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Inputs{}, &InputError{unknown[0], "is not an input of this action (it takes " + strings.Join(InputNames, ", ") + ")"}
	}
	get := func(name string) string { return strings.TrimSpace(getenv(EnvName(name))) }

	in := Inputs{Token: get("token"), Service: get("service"), GitHubToken: get("github-token")}
	var err error
	if in.Mode, err = oneOf("mode", get("mode"), ModeDeploy, ModeEvent); err != nil {
		return Inputs{}, err
	}
	if in.Server, err = serverURL(get("server")); err != nil {
		return Inputs{}, err
	}
	if in.OIDC, err = boolean("oidc", get("oidc"), false); err != nil {
		return Inputs{}, err
	}
	switch {
	case in.OIDC && in.Token != "":
		return Inputs{}, &InputError{"token", "must be empty when oidc is true (the ID token is the credential)"}
	case !in.OIDC && in.Token == "":
		return Inputs{}, &InputError{"token", "is required unless oidc is true"}
	}
	if in.Wait, err = boolean("wait", get("wait"), true); err != nil {
		return Inputs{}, err
	}
	in.Timeout = DefaultTimeout
	if s := get("timeout"); s != "" {
		d, perr := time.ParseDuration(s)
		if perr != nil || d <= 0 {
			return Inputs{}, &InputError{"timeout", fmt.Sprintf("must be a positive duration such as 10m or 90s, got %q", s)}
		}
		in.Timeout = d
	}
	if in.Mode == ModeEvent {
		if in.GitHubToken == "" {
			return Inputs{}, &InputError{"github-token", "is required in event mode (its default is the workflow's token)"}
		}
		return in, nil
	}

	in.Source = get("source")
	if in.Source == "" {
		in.Source = DefaultSource
	}
	if in.Strategy, err = oneOf("strategy", get("strategy"), rollout.StrategyFull, rollout.StrategyCanary); err != nil {
		return Inputs{}, err
	}
	in.Traffic = -1
	if s := get("traffic"); s != "" {
		n, perr := strconv.Atoi(strings.TrimSuffix(s, "%"))
		switch {
		case perr != nil || n < 0 || n > 100:
			return Inputs{}, &InputError{"traffic", fmt.Sprintf("must be a whole percentage from 0 to 100, got %q", s)}
		case in.Strategy != rollout.StrategyCanary:
			return Inputs{}, &InputError{"traffic", "needs strategy canary (a full deploy takes 100% by itself)"}
		case !in.Wait:
			return Inputs{}, &InputError{"traffic", "needs wait true (the canary must be normal before it takes traffic)"}
		}
		in.Traffic = n
	}
	return in, nil
}

// oneOf returns s as a T when it is one of allowed; "" means allowed[0].
func oneOf[T ~string](name, s string, allowed ...T) (T, error) {
	if s == "" {
		return allowed[0], nil
	}
	for _, a := range allowed {
		if s == string(a) {
			return a, nil
		}
	}
	words := make([]string, len(allowed))
	for i, a := range allowed {
		words[i] = string(a)
	}
	return "", &InputError{name, fmt.Sprintf("must be %s, got %q", strings.Join(words, " or "), s)}
}

// boolean reads a YAML-ish boolean as workflows write them.
func boolean(name, s string, def bool) (bool, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, &InputError{name, fmt.Sprintf("must be true or false, got %q", s)}
}

// serverURL checks the server input: an absolute http(s) URL.
func serverURL(s string) (string, error) {
	if s == "" {
		return "", &InputError{"server", "is required: the URL of the sluice server, e.g. https://sluice.example.com"}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", &InputError{"server", fmt.Sprintf("must be an http or https URL such as https://sluice.example.com, got %q", s)}
	}
	return strings.TrimRight(s, "/"), nil
}
