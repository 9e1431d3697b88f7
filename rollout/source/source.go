package source

// ManifestName is the file that must sit at the root of every source tree.
const ManifestName = "sluice.yaml"

// MaxManifestBytes bounds the size of the sluice.yaml entry that Inspect
// returns.
const MaxManifestBytes = 1 << 20

// Limits bound what reading an archive may cost. A zero or negative field
// means the value from DefaultLimits.
type Limits struct {
	// MaxBytes bounds the total uncompressed size of the regular files.
	MaxBytes int64
	// MaxFiles bounds the number of entries (files, directories, links).
	MaxFiles int
}

// DefaultLimits are the limits the server applies to sources it fetches or
// receives.
var DefaultLimits = Limits{MaxBytes: 1 << 30, MaxFiles: 100000}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	return l
}

// Info describes a valid archive.
type Info struct {
	// Manifest is the content of the tree's sluice.yaml.
	Manifest []byte
	// Prefix is the top directory stripped from every entry, such as
	// "acme-hello-1a2b3c4", or "" when sluice.yaml is at the archive root.
	Prefix string
	// Files is the number of entries in the archive.
	Files int
	// Bytes is the total uncompressed size of its regular files.
	Bytes int64
}

// Codes of Error, stable for callers to branch on and to show users.
const (
	// CodeNotArchive: the bytes are not gzip, not tar, or cut short.
	CodeNotArchive = "NotArchive"
	// CodeUnsafePath: an entry would land outside the tree (absolute path,
	// "..", a symlink or hard link leading out), or is a device or fifo.
	CodeUnsafePath = "UnsafePath"
	// CodeNoManifest: there is no sluice.yaml at the root of the tree.
	CodeNoManifest = "NoManifest"
	// CodeTooLarge: the archive exceeds its Limits, or sluice.yaml exceeds
	// MaxManifestBytes.
	CodeTooLarge = "TooLarge"
)

// Error is what Inspect and Extract return for a bad archive. Failures of
// the destination directory are ordinary wrapped errors instead.
type Error struct {
	// Code is one of the Code* constants.
	Code string
	// Message is a human sentence naming the entry at fault.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &source.Error{Code: source.CodeTooLarge}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
