package local

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// Defaults of the options and of unset Spec fields.
const (
	// DefaultDrainGrace is how long Stop waits after SIGTERM before SIGKILL
	// when the caller passes no grace of its own.
	DefaultDrainGrace = 10 * time.Second
	// DefaultRestartBackoffMin is the first delay before restarting a crashed
	// instance.
	DefaultRestartBackoffMin = 200 * time.Millisecond
	// DefaultRestartBackoffMax caps the restart delay.
	DefaultRestartBackoffMax = 30 * time.Second
	// DefaultWatchInterval is how often a running instance's listening
	// sockets are checked.
	DefaultWatchInterval = 2 * time.Second
)

// Names of the environment variables the runtime sets for its children.
const (
	// EnvOwner marks every process started by a Local; its value is the
	// absolute data directory. Cleanup finds orphans by it.
	EnvOwner = "SLUICE_OWNER"
	// EnvVersion is the version an instance belongs to.
	EnvVersion = "SLUICE_VERSION"
	// EnvPort is the port an instance must listen on.
	EnvPort = "PORT"
)

const (
	// backoffResetAfter is how long an instance must stay up before a crash
	// restarts it after the minimum backoff again.
	backoffResetAfter = 30 * time.Second
	// probeInterval is the pause between two health probes of one instance.
	probeInterval = 100 * time.Millisecond
	// failingProbes is how many 5xx answers in a row end a start as
	// HealthCheckFailed before the start timeout: an app that answers its
	// health path with a server error that many times (about a second of
	// probes) is failing, not starting. Like a startup probe's failure
	// threshold; refused connections and silence still wait the timeout.
	failingProbes = 10
	// probeTimeout bounds one health probe request.
	probeTimeout = time.Second
	// tailLines is how many log lines a Failure detail carries.
	tailLines = 40
	// tailBytes caps the log tail of a Failure detail.
	tailBytes = 8 << 10
	// cleanupGrace is how long Cleanup waits after SIGTERM before SIGKILL.
	cleanupGrace = 2 * time.Second
	// pollInterval is how often process exits are polled for.
	pollInterval = 20 * time.Millisecond
	// shell runs build and run commands.
	shell = "/bin/sh"
)

// inheritedEnv lists the variables of sluice's own environment that builds
// and instances inherit; everything else comes from the Spec.
var inheritedEnv = []string{"PATH", "HOME", "GOPATH", "GOCACHE", "GOMODCACHE", "GOFLAGS", "TMPDIR", "LANG"}

// defaultPath is used when sluice itself runs without PATH.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// Local is the process runtime. It is safe for concurrent use; calls for
// different versions run concurrently.
type Local struct {
	dataDir    string
	log        *slog.Logger
	grace      time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	client     *http.Client

	storeID string // SetStoreID: the key of versions/<storeID>/

	runAs *RunAs // nil: children run as sluice's own user, without namespaces
	exe   string // this program, re-executed as the init of a child's namespaces
	ns    bool   // children start in new PID and mount namespaces

	portMin, portMax int           // WithPortRange
	watchEvery       time.Duration // WithWatchInterval
	keep             int           // WithKeepVersions
	logLimit         int64         // WithLogLimit

	mu         sync.Mutex
	genLocks   map[string]*sync.Mutex // "<version>/<gen>" → serializes Build of one generation
	ports      map[int]bool           // ports handed to live groups
	portCursor int                    // where the next port search starts, as an offset into the range
	live       map[string]int         // liveKey → started groups not yet stopped
}

var _ runtime.Runtime = (*Local)(nil)

// Option configures a Local.
type Option func(*Local)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(log *slog.Logger) Option {
	return func(l *Local) {
		if log != nil {
			l.log = log
		}
	}
}

// WithDrainGrace sets the grace a Group's Stop uses between SIGTERM and
// SIGKILL when it is called with a grace of zero or less. Default
// DefaultDrainGrace.
func WithDrainGrace(d time.Duration) Option {
	return func(l *Local) {
		if d > 0 {
			l.grace = d
		}
	}
}

// WithRestartBackoff sets the delay before restarting a crashed instance: min
// for the first crash, doubled per further crash up to max, back to min once
// the instance stayed up for 30s. Defaults DefaultRestartBackoffMin and
// DefaultRestartBackoffMax.
func WithRestartBackoff(min, max time.Duration) Option {
	return func(l *Local) {
		if min > 0 {
			l.backoffMin = min
		}
		if max >= l.backoffMin {
			l.backoffMax = max
		}
	}
}

// WithWatchInterval sets how often the listening sockets of running
// instances are checked (see package doc); d <= 0 keeps
// DefaultWatchInterval.
func WithWatchInterval(d time.Duration) Option {
	return func(l *Local) {
		if d > 0 {
			l.watchEvery = d
		}
	}
}

// WithRunAs makes builds and instances run as r. An identity other than
// sluice's own needs sluice to run as root; New then makes the data
// directory traverse-only and refuses one r cannot reach. When sluice runs
// as root, New also tries to start children in new PID and mount
// namespaces (see RunNamespaceInit) and falls back, with a warning, to
// plain child processes where the kernel refuses. Without this option
// children run as sluice's own user, without namespaces.
func WithRunAs(r RunAs) Option {
	return func(l *Local) { l.runAs = &r }
}

// New returns a Local that keeps work directories and logs under dataDir,
// creating it if needed. dataDir is made absolute (symlinks resolved): it is
// also the SLUICE_OWNER marker, so two sluices must not share it.
func New(dataDir string, opts ...Option) (*Local, error) {
	if dataDir == "" {
		return nil, errors.New("create local runtime: empty data directory")
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "versions"), 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data directory: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("resolve data directory: %w", err)
	}
	l := &Local{
		dataDir:    abs,
		log:        slog.Default(),
		grace:      DefaultDrainGrace,
		backoffMin: DefaultRestartBackoffMin,
		backoffMax: DefaultRestartBackoffMax,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:             nil,
				DialContext:       (&net.Dialer{Timeout: probeTimeout}).DialContext,
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		genLocks:   map[string]*sync.Mutex{},
		ports:      map[int]bool{},
		portMin:    DefaultPortMin,
		portMax:    DefaultPortMax,
		watchEvery: DefaultWatchInterval,
		keep:       DefaultKeepVersions,
		logLimit:   DefaultLogLimit,
		live:       map[string]int{},
	}
	for _, o := range opts {
		o(l)
	}
	if err := l.checkPortRange(); err != nil {
		return nil, fmt.Errorf("create local runtime: %w", err)
	}
	if err := l.isolate(); err != nil {
		return nil, err
	}
	return l, nil
}

// isolate prepares the data directory for the run-as identity and decides
// whether children get namespaces.
func (l *Local) isolate() error {
	if l.switches() && os.Geteuid() != 0 {
		return fmt.Errorf("run builds and instances as %s: sluice must run as root to switch users", l.runAs)
	}
	if err := l.prepareDataDir(); err != nil {
		return err
	}
	if err := l.prepareHome(); err != nil {
		return err
	}
	if l.runAs == nil || os.Geteuid() != 0 {
		if os.Geteuid() != 0 {
			l.log.Info("builds and instances run as sluice's own user: they can read everything sluice can")
		}
		return nil
	}
	if err := l.nsSupported(); err != nil {
		l.log.Warn("builds and instances start without their own PID and mount namespaces: they can see the host's processes", "run_as", l.runAs.String(), "err", err)
		return nil
	}
	l.ns = true
	l.log.Info("builds and instances start in their own PID and mount namespaces", "run_as", l.runAs.String())
	return nil
}

// checkVersion rejects version names that are not a single safe path element.
func checkVersion(version string) error {
	if version == "" || version == "." || version == ".." ||
		strings.ContainsAny(version, "/\\\x00") {
		return fmt.Errorf("invalid version name %q", version)
	}
	return nil
}

// checkStoreID accepts "" (no key) and ids made of letters, digits, '-'
// and '_'.
func checkStoreID(id string) error {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invalid store id %q", id)
		}
	}
	return nil
}

// versionsRoot holds the version directories of this Local's store.
func (l *Local) versionsRoot() string {
	return filepath.Join(l.dataDir, "versions", l.storeID)
}

func (l *Local) versionDir(version string) string {
	return filepath.Join(l.versionsRoot(), version)
}

func (l *Local) genDir(version string, gen int) string {
	return filepath.Join(l.versionDir(version), "gen-"+strconv.Itoa(gen))
}

func (l *Local) srcDir(version string, gen int) string {
	return filepath.Join(l.genDir(version, gen), "src")
}

func (l *Local) builtMarker(version string, gen int) string {
	return filepath.Join(l.genDir(version, gen), "built")
}

func (l *Local) logDir(version string) string {
	return filepath.Join(l.versionDir(version), "logs")
}

func runLogName(gen, idx int) string {
	return fmt.Sprintf("run-%d-%d.log", gen, idx)
}

// genLock returns the mutex that serializes work on one generation.
func (l *Local) genLock(version string, gen int) *sync.Mutex {
	key := version + "/" + strconv.Itoa(gen)
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.genLocks[key]
	if !ok {
		m = &sync.Mutex{}
		l.genLocks[key] = m
	}
	return m
}

// childEnv builds a child's environment: the inherited variables, then
// spec's, then extra, later ones winning; SLUICE_OWNER always last so a
// Spec cannot hide a process from Cleanup.
func (l *Local) childEnv(specEnv map[string]string, extra map[string]string) []string {
	env := map[string]string{}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = defaultPath
	}
	if l.switches() {
		// sluice's own home and Go directories belong to sluice's user.
		for _, k := range []string{"GOPATH", "GOCACHE", "GOMODCACHE"} {
			delete(env, k)
		}
		env["HOME"] = l.homeDir()
	}
	for k, v := range specEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	env[EnvOwner] = l.dataDir
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

func (l *Local) releasePorts(ports []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ports {
		delete(l.ports, p)
	}
}

// SetStoreID keys the version directories by id, the identity of the store
// whose versions this Local runs: they live under versions/<id>/<version>/
// instead of versions/<version>/. Version names are unique within one store
// only; a store started afresh names its first version like the previous
// store did, and must not find, and serve, that version's build. id must be
// a single path element of letters, digits, '-' and '_'. Call it once,
// right after New, before any other method.
func (l *Local) SetStoreID(id string) error {
	if err := checkStoreID(id); err != nil {
		return fmt.Errorf("key version directories: %w", err)
	}
	l.storeID = id
	mode := os.FileMode(0o700)
	if l.switches() {
		mode = 0o711
	}
	if err := os.MkdirAll(l.versionsRoot(), mode); err != nil {
		return fmt.Errorf("key version directories: %w", err)
	}
	if err := os.Chmod(l.versionsRoot(), mode); err != nil {
		return fmt.Errorf("key version directories: %w", err)
	}
	return nil
}

// AdoptUnkeyed moves version directories kept before SetStoreID
// (versions/<version>/, recognised by their logs/ or gen-<N>/ entries)
// under versions/<store id>/, and returns how many it moved. Call it once,
// before Cleanup and any Start, and only when the store's data predates its
// id: then those versions are that store's. Without a store id it does
// nothing. Directories keyed by any id are left alone.
func (l *Local) AdoptUnkeyed() (int, error) {
	if l.storeID == "" {
		return 0, nil
	}
	parent := filepath.Join(l.dataDir, "versions")
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0, fmt.Errorf("adopt version directories: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || !isVersionDir(filepath.Join(parent, e.Name())) {
			continue
		}
		if err := os.Rename(filepath.Join(parent, e.Name()), l.versionDir(e.Name())); err != nil {
			return n, fmt.Errorf("adopt version directory %s: %w", e.Name(), err)
		}
		n++
	}
	if n > 0 {
		l.log.Info("version directories moved under the store id", "moved", n, "store_id", l.storeID)
	}
	return n, nil
}

// isVersionDir reports whether dir looks like a version directory: it has
// a logs/ or a gen-<N>/ entry.
func isVersionDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && (e.Name() == "logs" || strings.HasPrefix(e.Name(), "gen-")) {
			return true
		}
	}
	return false
}
