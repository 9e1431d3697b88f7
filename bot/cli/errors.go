package cli

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
)

// codedError is a CLI error with a stable machine code for --json.
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// Code is the error's machine code.
func (e *codedError) Code() string { return e.code }

// Usage marks err as a usage error (bad arguments or flags): code "usage".
func Usage(err error) error { return &codedError{code: "usage", err: err} }

// IsUsage reports whether err is a usage error (see Usage).
func IsUsage(err error) bool {
	var c *codedError
	return errors.As(err, &c) && c.code == "usage"
}

// ErrorJSON is how a command run with --json reports err: the API's error
// body, {"error": {"code", "message", "problems"}}, so scripts read one
// shape whether the server or the CLI refused. The code is the API's when
// the server refused, "usage" for bad arguments, another stable code for
// errors the CLI names (invalid_server, router_port, token_required), and
// "error" for the rest.
func ErrorJSON(err error) []byte {
	body := wire.ErrorBody{Code: "error", Message: err.Error()}
	var re *rollout.Error
	var coded interface{ Code() string }
	switch {
	case errors.As(err, &re):
		body.Code, body.Problems = re.Code, re.Problems
	case errors.As(err, &coded) && coded.Code() != "":
		body.Code = coded.Code()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(wire.Error{Error: body})
	return buf.Bytes()
}
