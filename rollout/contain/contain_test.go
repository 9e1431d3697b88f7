package contain_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/contain"
)

// A panicking unit comes back as its own failure, logged with its stack
// and counted; the unit after it runs as usual.
func TestAPanicFailsOnlyItsUnit(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	before := contain.Panics()
	err := contain.Do(log.With("delivery", "d-1"), "delivery", func() error { panic("boom") })
	var pe *contain.PanicError
	if !errors.As(err, &pe) || pe.Unit != "delivery" || pe.Value != "boom" {
		t.Fatalf("the panic came back as %v", err)
	}
	if contain.Panics() < before+1 {
		t.Fatalf("the panic was not counted")
	}
	text := logs.String()
	for _, want := range []string{"unit=delivery", "delivery=d-1", "panic=boom", "contain_test.go"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the log lacks %q:\n%s", want, text)
		}
	}
	ran := false
	want := errors.New("plain failure")
	if err := contain.Do(log, "delivery", func() error { ran = true; return want }); err != want || !ran {
		t.Fatalf("the next unit: ran %v, err %v", ran, err)
	}
}
