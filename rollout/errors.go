package rollout

import (
	"errors"
	"fmt"
)

// Kind classifies an Error for front doors (the HTTP edge maps it to a status).
type Kind string

const (
	// KindInvalid: the request itself is wrong (bad policy, rule, source,
	// manifest); nothing was changed.
	KindInvalid Kind = "invalid"
	// KindNotFound: a named service or version does not exist.
	KindNotFound Kind = "not_found"
	// KindConflict: the request is well formed but the current state does
	// not allow it (e.g. a version that is not normal); nothing was changed.
	KindConflict Kind = "conflict"
	// KindForbidden: the caller's Principal may not do this to this
	// service (another repository's, or one only the admin may change);
	// nothing was changed.
	KindForbidden Kind = "forbidden"
)

// Error codes carried by Error.Code; stable, shown to API clients.
const (
	ErrCodeUnknownService = "unknown_service"
	ErrCodeUnknownVersion = "unknown_version"
	ErrCodeInvalidPolicy  = "invalid_policy"
	ErrCodeInvalidRule    = "invalid_rule"
	ErrCodeNotNormal      = "version_not_normal"
	ErrCodeInvalidSource  = "invalid_source"
	ErrCodeInvalidConfig  = "invalid_config"
	ErrCodeManifest       = "invalid_manifest"
	ErrCodeBusy           = "version_busy"
	ErrCodeNoStable       = "no_stable_version"
	ErrCodeStartFailed    = "start_failed"
	ErrCodeWrongRepo      = "wrong_repository"
	ErrCodeForbidden      = "forbidden"
	// ErrCodeUnchanged: the operation would change nothing (an abort of a
	// version that has no traffic and no rule); nothing was recorded.
	ErrCodeUnchanged = "nothing_changed"
	// ErrCodeDataPlane: the data plane (a gateway) refused the new policy
	// or did not confirm it; the previous policy still routes.
	ErrCodeDataPlane = "data_plane_rejected"
)

// Error is a user-facing refusal of an operation. Message is written for a
// person and names the problem; Code is stable for programs. An operation
// that returns an *Error has changed nothing.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// Problems lists manifest problems with positions, when Code is
	// ErrCodeManifest.
	Problems []Problem
}

// Problem is one positioned problem in a manifest.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func invalid(code, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Code: code, Message: fmt.Sprintf(format, args...)}
}

func conflict(code, format string, args ...any) *Error {
	return &Error{Kind: KindConflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *Error {
	return &Error{Kind: KindForbidden, Code: ErrCodeForbidden, Message: fmt.Sprintf(format, args...)}
}

func notFound(code, format string, args ...any) *Error {
	return &Error{Kind: KindNotFound, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
