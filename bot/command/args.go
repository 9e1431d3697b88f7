package command

import (
	"fmt"
	"github.com/sluicehq/sluice/rollout/names"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/sluicehq/sluice/rollout/policy"
)

// numberRE is a decimal number, to explain why it is not a percentage.
var numberRE = regexp.MustCompile(`^[-+]?(\d+\.\d*|\.\d+|\d+)$`)

// serviceOnly reads the arguments of a command that takes at most a service.
func serviceOnly(args []string) (Command, string) {
	return withService(Command{}, args)
}

func parseCanary(args []string) (Command, string) {
	if len(args) == 0 {
		return Command{}, "The percentage is missing, e.g. /canary 10%."
	}
	pct, p := parsePercent(args[0])
	if p != "" {
		return Command{}, p
	}
	c := Command{Percent: pct}
	return withService(c, args[1:])
}

// parsePercent reads "N%" with N a whole number from 0 to 100.
func parsePercent(a string) (int, string) {
	num, hasPct := strings.CutSuffix(a, "%")
	if !hasPct {
		if allDigits(num) {
			return 0, fmt.Sprintf("%q lacks the %% sign; write %s%%.", a, a)
		}
		if names.ServiceShape(a) {
			return 0, fmt.Sprintf("%q is not a percentage; the percentage comes first, e.g. /canary 10%% %s.", a, a)
		}
		return 0, fmt.Sprintf("%q is not a percentage; write a whole number from 0 to 100 followed by %%, e.g. 10%%.", a)
	}
	if allDigits(num) {
		n, err := strconv.Atoi(num)
		if err != nil || n > 100 {
			return 0, fmt.Sprintf("%s is more than 100%%; the percentage is from 0%% to 100%%.", a)
		}
		return n, ""
	}
	if numberRE.MatchString(num) {
		if strings.HasPrefix(num, "-") {
			return 0, fmt.Sprintf("%s is negative; the percentage is from 0%% to 100%%.", a)
		}
		if strings.Contains(num, ".") {
			return 0, fmt.Sprintf("%s is not a whole number; traffic moves in whole percent, e.g. 10%%.", a)
		}
	}
	return 0, fmt.Sprintf("%q is not a percentage; write a whole number from 0 to 100 followed by %%, e.g. 10%%.", a)
}

func parseRoute(args []string) (Command, string) {
	if len(args) == 0 {
		return Command{}, "The match is missing, e.g. /route env=beta or /route env=beta&region=eu*."
	}
	m, err := policy.ParseMatch(strings.TrimPrefix(args[0], "?"))
	if err != nil {
		return Command{}, sentence(err.Error())
	}
	return withService(Command{Match: m}, args[1:])
}

func parsePredict(args []string) (Command, string) {
	q := ""
	if len(args) > 0 {
		q = strings.TrimPrefix(args[0], "?")
	}
	if q == "" {
		return Command{}, "The query is missing, e.g. /predict env=beta&region=eu."
	}
	return withService(Command{Query: q}, args[1:])
}

func parseRollback(args []string) (Command, string) {
	switch {
	case len(args) == 0:
		return Command{}, ""
	case names.LooksLikeVersion(args[0]): // the first argument of /rollback is a version when it looks like one
		c, p := withService(Command{Version: args[0]}, args[1:])
		if p == "" && c.Service != "" && !strings.HasPrefix(c.Version, c.Service+"-") {
			return Command{}, fmt.Sprintf("%q is not a version of %q; its versions are named %s-NNN.", c.Version, c.Service, c.Service)
		}
		return c, p
	case len(args) >= 2 && names.LooksLikeVersion(args[1]):
		return Command{}, fmt.Sprintf("The version comes before the service: /rollback %s %s.", args[1], args[0])
	case len(args) >= 2:
		return Command{}, fmt.Sprintf("%q is not a version name; versions are named <service>-NNN, e.g. hello-003.", args[0])
	}
	if p := checkService(args[0]); p != "" {
		return Command{}, p + " A version is named <service>-NNN, e.g. hello-003."
	}
	return Command{Service: args[0]}, ""
}

func parseHelp(args []string) (Command, string) {
	return Command{}, extra(args)
}

// withService reads an optional trailing service into c.
func withService(c Command, args []string) (Command, string) {
	if len(args) == 0 {
		return c, ""
	}
	if p := extra(args[1:]); p != "" {
		return Command{}, p
	}
	if strings.Contains(args[0], "=") && (c.Match != nil || c.Query != "") {
		return Command{}, fmt.Sprintf("%q looks like another condition; join conditions with '&' and no spaces, e.g. env=beta&region=eu.", args[0])
	}
	if p := checkService(args[0]); p != "" {
		return Command{}, p
	}
	c.Service = args[0]
	return c, ""
}

// checkService returns a problem when s is not a service name.
func checkService(s string) string {
	switch {
	case len(s) > names.MaxServiceLength:
		return fmt.Sprintf("%q is not a service name: it is longer than %d characters.", s, names.MaxServiceLength)
	case !names.ServiceShape(s):
		return fmt.Sprintf("%q is not a service name: service names are lowercase letters, digits and '-', starting with a letter and not ending with '-'.", s)
	}
	return ""
}

// extra returns a problem naming unexpected arguments, or "" when none.
func extra(args []string) string {
	switch len(args) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("Unexpected argument %q.", args[0])
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = strconv.Quote(a)
	}
	return "Unexpected arguments " + strings.Join(q, " ") + "."
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// sentence turns a lowercase error message into a sentence.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	r := []rune(msg)
	r[0] = unicode.ToUpper(r[0])
	s := string(r)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
