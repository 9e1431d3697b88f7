// Package contain runs one unit of background work — a webhook delivery,
// an outbox report, an engine event, a build, a cron round — so that a
// panic in it fails that unit only: the panic is logged with its stack,
// counted, and returned as an error the caller records as the unit's
// failure before it goes on with the next unit.
//
// It is a leaf: it imports only the standard library, so the bot, the
// engine and cmd share it without an arrow between them.
package contain

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
)

// panics counts the panics Do contained in this process.
var panics atomic.Uint64

// Panics returns how many panics Do has contained since the process
// started, over every caller. It only grows; safe for concurrent use.
func Panics() uint64 { return panics.Load() }

// PanicError is a unit's panic, turned into its failure.
type PanicError struct {
	// Unit names the unit that panicked (e.g. "delivery", "deploy").
	Unit string
	// Value is what the unit panicked with.
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.Unit, e.Value) }

// Do runs f as one unit of work named unit. It returns f's error, or a
// *PanicError when f panicked; the panic is then logged on log at error
// level with the unit, the panic value and the stack, and counted in
// Panics. log carries the unit's context (delivery, service, version).
// A nil log means slog.Default().
func Do(log *slog.Logger, unit string, f func() error) (err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		panics.Add(1)
		if log == nil {
			log = slog.Default()
		}
		log.Error("unit of work panicked", "unit", unit, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		err = &PanicError{Unit: unit, Value: v}
	}()
	return f()
}
