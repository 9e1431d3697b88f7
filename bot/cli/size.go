package cli

import (
	"github.com/sluicehq/sluice/rollout/manifest"
)

// Size is a byte count given on the command line or in the environment
// with an optional unit, as in sluice.yaml: 512MiB, 64KiB, 1GB or 1048576.
// Help shows defaults in that form (default:"256MiB").
type Size int64

// UnmarshalText parses a size; kong calls it for flags and env values.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := manifest.ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// String formats s in the largest binary unit that divides it.
func (s Size) String() string { return manifest.FormatSize(int64(s)) }
