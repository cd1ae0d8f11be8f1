// Package config holds noded's configuration: built-in defaults, an optional
// TOML file, a drop-in directory and command-line flags, applied in that
// order. Every command-line flag is also a top-level TOML key of the same
// name, so `noded config` output can be pasted into /etc/noded/noded.toml.
//
// Loading has no side effects: it neither creates directories nor opens
// anything. Validation only checks values; the daemon acts on them.
package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/imagesvc/pinned"
	"github.com/noded-dev/noded/internal/netcni"
)

// Default paths. They are the values a stock Debian machine runs with when
// no configuration file exists.
const (
	DefaultConfigFile   = "/etc/noded/noded.toml"
	DefaultConfigDir    = "/etc/noded/noded.toml.d"
	DefaultListen       = "/run/noded/noded.sock"
	DefaultRoot         = "/var/lib/noded/storage"
	DefaultRunRoot      = "/run/noded/storage"
	DefaultStateDir     = "/var/lib/noded/state"
	DefaultRunDir       = "/run/noded/run"
	DefaultCNIConfigDir = "/etc/cni/net.d"
	// DefaultPauseImage is the built-in pause image: noded creates it in
	// storage itself from its bundled pause binary, so pods run on a node
	// with no registry access.
	DefaultPauseImage = "localhost/noded/pause:builtin"
	// NRI's defaults are the library's and containerd's and CRI-O's, so
	// that plugins packaged for those find noded.
	DefaultNRIListen          = "/var/run/nri/nri.sock"
	DefaultNRIPluginDir       = "/opt/nri/plugins"
	DefaultNRIPluginConfigDir = "/etc/nri/conf.d"
)

// DefaultCDISpecDirs are the CDI specification's directories: static
// specs, then generated ones (which win).
var DefaultCDISpecDirs = []Path{"/etc/cdi", "/var/run/cdi"}

// Path is a filesystem path; validation requires it to be absolute when set.
type Path = string

// Config is noded's effective configuration. Field tags name the TOML key,
// which is also the command-line flag (without the leading dashes).
type Config struct {
	// Listen is the unix socket the CRI gRPC server binds (mode 0660).
	Listen Path `toml:"listen"`
	// Root and RunRoot are the containers/storage graph root and run root.
	Root    Path `toml:"root"`
	RunRoot Path `toml:"runroot"`
	// StorageDriver is the containers/storage graph driver.
	StorageDriver string `toml:"storage-driver"`
	// StorageOptions are passed to the graph driver (e.g. "overlay.mountopt=nodev").
	StorageOptions []string `toml:"storage-options"`
	// StateDir keeps noded's own pod and container records, which survive a
	// restart of the daemon.
	StateDir Path `toml:"state-dir"`
	// RunDir holds what must not survive a reboot: monitor sockets,
	// pinned network namespaces, libcontainer state (a tmpfs).
	RunDir Path `toml:"run-dir"`

	LogLevel  string `toml:"log-level"`
	LogFormat string `toml:"log-format"`

	// MetricsAddress serves Prometheus /metrics when set (host:port).
	MetricsAddress string `toml:"metrics-address"`
	// TracingEndpoint is the OpenTelemetry collector (OTLP over gRPC,
	// host:port) noded sends its spans to; empty turns tracing off.
	// TracingSamplingRatePerMillion is the share of new traces recorded
	// (requests in a trace their caller sampled always are). CRI-O's names.
	TracingEndpoint               string `toml:"tracing-endpoint"`
	TracingSamplingRatePerMillion Count  `toml:"tracing-sampling-rate-per-million"`

	CNIConfigDir  Path   `toml:"cni-config-dir"`
	CNIPluginDirs []Path `toml:"cni-plugin-dirs"`
	// CNIDefaultNetwork writes noded's default bridge network
	// (netcni.WriteDefaultNetwork) into CNIConfigDir at start when that
	// holds no network, so that a fresh node runs pods.
	CNIDefaultNetwork Bool `toml:"cni-default-network"`

	// RegistriesConf is a containers-registries.conf(5) file. Empty means
	// $CONTAINERS_REGISTRIES_CONF (ApplyEnvironment), else the
	// containers/image default, /etc/containers/registries.conf (and
	// registries.conf.d).
	RegistriesConf Path `toml:"registries-conf"`
	// SignaturePolicy is a containers-policy.json(5) file. Empty means
	// /etc/containers/policy.json when it exists, else accept anything (a
	// stock Debian machine has no policy file).
	SignaturePolicy Path `toml:"signature-policy"`
	// PullProgressTimeout fails a pull that makes no progress for this long;
	// 0 disables the check.
	PullProgressTimeout Duration `toml:"pull-progress-timeout"`
	// MaxParallelDownloads bounds concurrent blob downloads across all
	// pulls.
	MaxParallelDownloads Count `toml:"max-parallel-downloads"`

	PauseImage string `toml:"pause-image"`
	// PinnedImages are patterns of image names (exact, "prefix*" or
	// "*keyword*", as CRI-O's pinned_images) that ImageStatus and
	// ListImages report as pinned, so that the kubelet's image garbage
	// collection keeps them; the pause image always is.
	PinnedImages []string `toml:"pinned-images"`
	// MaxParallelStarts bounds the pod sandboxes and containers created at
	// once (internal/admit); 0 means the number of CPUs.
	MaxParallelStarts Count `toml:"max-parallel-starts"`

	// CgroupManager is "cgroupfs" or "systemd"; the kubelet's cgroupDriver
	// must match.
	CgroupManager string `toml:"cgroup-manager"`
	// ConmonPath is the conmon-go monitor binary; empty means the
	// conmon-go next to the noded executable.
	ConmonPath Path `toml:"conmon-path"`
	// PausePath is the static pause binary used for the built-in pause
	// image; empty means noded-pause next to the noded executable.
	PausePath Path `toml:"pause-path"`
	// CriuPath is the criu binary of checkpoints and restores; it must be
	// named criu (libcontainer runs "criu" from PATH: its directory goes
	// first on the runtime helper's PATH). Empty: criu on noded's PATH.
	CriuPath Path `toml:"criu-path"`
	// SeccompProfileRoot confines Localhost seccomp profiles to one
	// directory (e.g. /var/lib/kubelet/seccomp); empty allows any absolute
	// path, as containerd and CRI-O do.
	SeccompProfileRoot Path `toml:"seccomp-profile-root"`
	// SeccompWhenEmpty is what a container whose request names no seccomp
	// profile runs with: "runtime-default" (CRI-O's choice, the default)
	// or "unconfined" (containerd's). The kubelet always names one.
	SeccompWhenEmpty string `toml:"seccomp-when-empty"`
	// CDISpecDirs are the directories of CDI device specs, later ones
	// winning for a device two define; they are read again at each
	// CreateContainer that asks for a CDI device. Empty turns CDI off.
	CDISpecDirs []Path `toml:"cdi-spec-dirs"`

	// ShutdownTimeout bounds how long a SIGTERM waits for in-flight RPCs.
	ShutdownTimeout Duration `toml:"shutdown-timeout"`

	// StreamAddress and StreamPort are where the CRI streaming server
	// (the URLs Exec, Attach and PortForward return) listens; port 0 is
	// an ephemeral port chosen at start. CRI-O's names.
	StreamAddress string `toml:"stream-address"`
	StreamPort    Count  `toml:"stream-port"`
	// StreamIdleTimeout closes a streaming connection idle for this long.
	StreamIdleTimeout Duration `toml:"stream-idle-timeout"`
	// StreamTLSCert and StreamTLSKey serve the streams over TLS; with
	// StreamTLSCA, clients must present a certificate signed by it.
	StreamTLSCert Path `toml:"stream-tls-cert"`
	StreamTLSKey  Path `toml:"stream-tls-key"`
	StreamTLSCA   Path `toml:"stream-tls-ca"`

	// NRIEnable runs NRI plugins (internal/nri); off, noded calls none.
	NRIEnable Bool `toml:"nri-enable"`
	// NRIListen is the socket NRI plugins connect to.
	NRIListen Path `toml:"nri-listen"`
	// NRIPluginDir holds pre-installed plugins noded starts;
	// NRIPluginConfigDir their configuration files.
	NRIPluginDir       Path `toml:"nri-plugin-dir"`
	NRIPluginConfigDir Path `toml:"nri-plugin-config-dir"`
	// NRIPluginRegistrationTimeout bounds a plugin's registration,
	// NRIPluginRequestTimeout each of its answers; a plugin that misses
	// one is disconnected.
	NRIPluginRegistrationTimeout Duration `toml:"nri-plugin-registration-timeout"`
	NRIPluginRequestTimeout      Duration `toml:"nri-plugin-request-timeout"`
}

// Bool is a boolean that a file may write as true and a command-line
// flag as "true".
type Bool bool

// UnmarshalText parses true or false (and what strconv.ParseBool takes).
func (b *Bool) UnmarshalText(t []byte) error {
	v, err := strconv.ParseBool(strings.TrimSpace(string(t)))
	if err != nil {
		return fmt.Errorf("not a boolean (true or false): %q", string(t))
	}
	*b = Bool(v)
	return nil
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"30s\" or \"5m\"): %q", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Count is a non-negative integer that a file may write as a number (3)
// and a command-line flag as a string ("3").
type Count int

// UnmarshalText parses a decimal integer.
func (c *Count) UnmarshalText(b []byte) error {
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("not an integer: %q", string(b))
	}
	*c = Count(v)
	return nil
}

// The values of seccomp-when-empty.
const (
	SeccompRuntimeDefault = "runtime-default"
	SeccompUnconfined     = "unconfined"
)

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		Listen:               DefaultListen,
		Root:                 DefaultRoot,
		RunRoot:              DefaultRunRoot,
		StorageDriver:        "overlay",
		StorageOptions:       []string{},
		StateDir:             DefaultStateDir,
		RunDir:               DefaultRunDir,
		LogLevel:             "info",
		LogFormat:            "text",
		CNIConfigDir:         DefaultCNIConfigDir,
		CNIPluginDirs:        slices.Clone(netcni.DefaultPluginDirs),
		CNIDefaultNetwork:    true,
		PullProgressTimeout:  Duration{5 * time.Minute},
		MaxParallelDownloads: 3,
		PauseImage:           DefaultPauseImage,
		PinnedImages:         []string{},
		CgroupManager:        defaultCgroupManager(),
		SeccompWhenEmpty:     SeccompRuntimeDefault,
		CDISpecDirs:          slices.Clone(DefaultCDISpecDirs),
		ShutdownTimeout:      Duration{30 * time.Second},
		StreamAddress:        "127.0.0.1",
		StreamIdleTimeout:    Duration{4 * time.Hour},

		NRIEnable:                    true,
		NRIListen:                    DefaultNRIListen,
		NRIPluginDir:                 DefaultNRIPluginDir,
		NRIPluginConfigDir:           DefaultNRIPluginConfigDir,
		NRIPluginRegistrationTimeout: Duration{5 * time.Second},
		NRIPluginRequestTimeout:      Duration{2 * time.Second},

		// With an endpoint set, every request: what an operator who turns
		// tracing on expects to see.
		TracingSamplingRatePerMillion: 1_000_000,
	}
}

// defaultCgroupManager follows the kubelet's expectation on the host:
// systemd when systemd is PID 1, cgroupfs otherwise.
func defaultCgroupManager() string {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return "systemd"
	}
	return "cgroupfs"
}

// Sources says where configuration comes from. An empty File means the
// default file, which may be absent; an explicitly named file must exist.
type Sources struct {
	File         Path
	FileExplicit bool
	Dir          Path
	DirExplicit  bool
}

// Load applies the file and the drop-in directory (files ending in .toml,
// in lexical order) on top of the defaults, then validates the result.
// Flags are applied by the caller afterwards, followed by Validate.
func Load(src Sources) (*Config, error) {
	cfg := Default()
	if err := cfg.mergeFile(src.File, src.FileExplicit); err != nil {
		return nil, err
	}
	files, err := dropIns(src.Dir, src.DirExplicit)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := cfg.mergeFile(f, true); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func dropIns(dir Path, explicit bool) ([]Path, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return nil, nil
		}
		return nil, fmt.Errorf("config drop-in directory: %w", err)
	}
	var files []Path
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".toml") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	return files, nil
}

// mergeFile decodes one TOML file over cfg. Keys absent from the file keep
// their current value. Unknown keys are an error naming the key and file.
func (c *Config) mergeFile(path Path, mustExist bool) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && !mustExist {
			return nil
		}
		return fmt.Errorf("config file: %w", err)
	}
	return c.Merge("config file "+path, string(data))
}

// Merge decodes a TOML document over c; source names it in errors. Keys
// absent from the document keep their current value; an unknown key is an
// error that names it.
func (c *Config) Merge(source, doc string) error {
	md, err := toml.Decode(doc, c)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key %q", source, strings.Join(keys, "\", \""))
	}
	return nil
}

// RegistriesConfEnv names the registries.conf file in every containers/image
// tool; noded honours it too (see ApplyEnvironment).
const RegistriesConfEnv = "CONTAINERS_REGISTRIES_CONF"

// ApplyEnvironment fills the keys that the environment supplies when the
// configuration leaves them empty: registries-conf from
// $CONTAINERS_REGISTRIES_CONF, as in every containers/image tool; an
// explicit setting, in a file or a flag, wins. It runs once the files and
// flags are applied, before Validate, and is the only place noded reads the
// variable: the image service is given the resolved path.
func (c *Config) ApplyEnvironment() {
	if env := os.Getenv(RegistriesConfEnv); env != "" && c.RegistriesConf == "" {
		c.RegistriesConf = env
	}
}

// Validate checks every value and names the offending key.
func (c *Config) Validate() error {
	paths := map[string]Path{
		"listen": c.Listen, "root": c.Root, "runroot": c.RunRoot, "state-dir": c.StateDir, "run-dir": c.RunDir,
		"cni-config-dir": c.CNIConfigDir,
	}
	optionalPaths := map[string]Path{
		"registries-conf": c.RegistriesConf, "signature-policy": c.SignaturePolicy,
		"conmon-path": c.ConmonPath, "pause-path": c.PausePath, "criu-path": c.CriuPath, "seccomp-profile-root": c.SeccompProfileRoot,
		"stream-tls-cert": c.StreamTLSCert, "stream-tls-key": c.StreamTLSKey, "stream-tls-ca": c.StreamTLSCA,
		"nri-listen": c.NRIListen, "nri-plugin-dir": c.NRIPluginDir, "nri-plugin-config-dir": c.NRIPluginConfigDir,
	}
	for _, key := range sortedKeys(paths) {
		if paths[key] == "" {
			return fmt.Errorf("invalid value for %q: must not be empty", key)
		}
		optionalPaths[key] = paths[key]
	}
	if c.CriuPath != "" && filepath.Base(c.CriuPath) != "criu" {
		return fmt.Errorf("invalid value for \"criu-path\": %q is not named criu", c.CriuPath)
	}
	for _, key := range sortedKeys(optionalPaths) {
		if p := optionalPaths[key]; p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("invalid value for %q: %q is not an absolute path", key, p)
		}
	}
	for _, l := range []struct {
		key  string
		dirs []Path
	}{{"cni-plugin-dirs", c.CNIPluginDirs}, {"cdi-spec-dirs", c.CDISpecDirs}} {
		for _, p := range l.dirs {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("invalid value for %q: %q is not an absolute path", l.key, p)
			}
		}
	}
	for _, p := range c.PinnedImages {
		if err := pinned.Check(p); err != nil {
			return fmt.Errorf("invalid value for %q: %w", "pinned-images", err)
		}
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("invalid value for %q: %q (want one of trace, debug, info, warn, error, fatal, panic)", "log-level", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("invalid value for %q: %q (want text or json)", "log-format", c.LogFormat)
	}
	if c.SeccompWhenEmpty != SeccompRuntimeDefault && c.SeccompWhenEmpty != SeccompUnconfined {
		return fmt.Errorf("invalid value for %q: %q (want %s or %s)", "seccomp-when-empty", c.SeccompWhenEmpty, SeccompRuntimeDefault, SeccompUnconfined)
	}
	if c.CgroupManager != "cgroupfs" && c.CgroupManager != "systemd" {
		return fmt.Errorf("invalid value for %q: %q (want cgroupfs or systemd)", "cgroup-manager", c.CgroupManager)
	}
	if c.StorageDriver == "" {
		return fmt.Errorf("invalid value for %q: must not be empty", "storage-driver")
	}
	if c.PauseImage == "" {
		return fmt.Errorf("invalid value for %q: must not be empty", "pause-image")
	}
	if err := validateHostPort("metrics-address", c.MetricsAddress); err != nil {
		return err
	}
	if c.PullProgressTimeout.Duration < 0 {
		return fmt.Errorf("invalid value for %q: must not be negative", "pull-progress-timeout")
	}
	if c.TracingSamplingRatePerMillion < 0 || c.TracingSamplingRatePerMillion > 1_000_000 {
		return fmt.Errorf("invalid value for %q: %d (want 0 to 1000000)", "tracing-sampling-rate-per-million", c.TracingSamplingRatePerMillion)
	}
	if c.TracingEndpoint != "" {
		// Any host name: a collector is often a Service name.
		if _, port, err := net.SplitHostPort(c.TracingEndpoint); err != nil || port == "" {
			return fmt.Errorf("invalid value for %q: %q is not host:port", "tracing-endpoint", c.TracingEndpoint)
		}
	}
	if c.MaxParallelDownloads < 1 || c.MaxParallelDownloads > 64 {
		return fmt.Errorf("invalid value for %q: %d (want 1 to 64)", "max-parallel-downloads", c.MaxParallelDownloads)
	}
	if c.MaxParallelStarts < 0 || c.MaxParallelStarts > 256 {
		return fmt.Errorf("invalid value for %q: %d (want 0 to 256)", "max-parallel-starts", c.MaxParallelStarts)
	}
	if c.ShutdownTimeout.Duration <= 0 {
		return fmt.Errorf("invalid value for %q: must be positive", "shutdown-timeout")
	}
	if err := c.validateNRI(); err != nil {
		return err
	}
	return c.validateStream()
}

// validateNRI checks NRI's keys: a socket to listen on when NRI is on, and
// positive timeouts.
func (c *Config) validateNRI() error {
	if c.NRIEnable && c.NRIListen == "" {
		return fmt.Errorf("invalid value for %q: must not be empty with nri-enable", "nri-listen")
	}
	for key, d := range map[string]Duration{
		"nri-plugin-registration-timeout": c.NRIPluginRegistrationTimeout,
		"nri-plugin-request-timeout":      c.NRIPluginRequestTimeout,
	} {
		if d.Duration <= 0 {
			return fmt.Errorf("invalid value for %q: must be positive", key)
		}
	}
	return nil
}

// validateStream checks the streaming server's keys.
func (c *Config) validateStream() error {
	if c.StreamAddress == "" || (c.StreamAddress != "localhost" && net.ParseIP(c.StreamAddress) == nil) {
		return fmt.Errorf("invalid value for %q: %q is not an IP address or localhost", "stream-address", c.StreamAddress)
	}
	if c.StreamPort < 0 || c.StreamPort > 65535 {
		return fmt.Errorf("invalid value for %q: %d (want 0 to 65535; 0 picks a free port)", "stream-port", c.StreamPort)
	}
	if c.StreamIdleTimeout.Duration <= 0 {
		return fmt.Errorf("invalid value for %q: must be positive", "stream-idle-timeout")
	}
	if (c.StreamTLSCert == "") != (c.StreamTLSKey == "") {
		return fmt.Errorf("invalid value for %q and %q: set both or neither", "stream-tls-cert", "stream-tls-key")
	}
	if c.StreamTLSCA != "" && c.StreamTLSCert == "" {
		return fmt.Errorf("invalid value for %q: client certificates need the server's own (stream-tls-cert, stream-tls-key)", "stream-tls-ca")
	}
	return nil
}

// validateHostPort accepts "" (off) or host:port with an IP or localhost.
func validateHostPort(key, v string) error {
	if v == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || port == "" {
		return fmt.Errorf("invalid value for %q: %q is not host:port", key, v)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("invalid value for %q: %q is not an IP address or localhost", key, host)
	}
	return nil
}

func sortedKeys(m map[string]Path) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Key documents one configuration key, which is also a command-line flag.
type Key struct {
	Name string
	Help string
}

// Keys lists every key in file order with its documentation. `noded config`
// prints it as comments and the command line uses it as flag help.
var Keys = []Key{
	{"listen", "Unix socket path of the CRI gRPC server (created with mode 0660)."},
	{"root", "containers/storage root directory (image layers, writable layers)."},
	{"runroot", "containers/storage run root directory (mount state; tmpfs)."},
	{"storage-driver", "containers/storage graph driver."},
	{"storage-options", "Graph driver options, e.g. [\"overlay.mountopt=nodev\"]."},
	{"state-dir", "Directory of noded's pod and container records; survives restarts."},
	{"run-dir", "Directory of monitor sockets, pinned network namespaces and runtime state; a tmpfs, short (unix socket paths)."},
	{"log-level", "Log level: trace, debug, info, warn, error, fatal or panic."},
	{"log-format", "Log format: text or json."},
	{"metrics-address", "host:port serving Prometheus /metrics; empty turns metrics off."},
	{"tracing-endpoint", "OpenTelemetry collector (OTLP/gRPC, host:port) that receives a span per CRI request and its stages; empty turns tracing off."},
	{"tracing-sampling-rate-per-million", "Share of new traces recorded, per million (requests whose caller sampled their trace always are)."},
	{"cni-config-dir", "CNI network configuration directory; the first file in lexical order is used."},
	{"cni-plugin-dirs", "CNI plugin directories, searched in order (comma-separated on the command line)."},
	{"cni-default-network", "At start, when cni-config-dir holds no network, write noded's default one there: " + netcni.DefaultNetworkFile + ", bridge " + netcni.DefaultBridge + " on " + netcni.DefaultSubnet + " (and " + netcni.DefaultSubnet6 + " when the host has IPv6); an existing network is never changed."},
	{"registries-conf", "containers-registries.conf(5) file; empty: $CONTAINERS_REGISTRIES_CONF or /etc/containers/registries.conf."},
	{"signature-policy", "containers-policy.json(5) file; empty: /etc/containers/policy.json, or accept anything when it is absent."},
	{"pull-progress-timeout", "Fail a pull that makes no progress for this long; 0 disables the check."},
	{"max-parallel-downloads", "Blobs downloaded at once, across all pulls (1 to 64)."},
	{"pause-image", "Image of the pod sandbox (pause) container; the default is built into noded."},
	{"pinned-images", "Images reported as pinned (kept by the kubelet's image garbage collection) besides the pause image: exact names, \"prefix*\" or \"*keyword*\" (comma-separated on the command line)."},
	{"max-parallel-starts", "Pod sandboxes and containers created at once; more wait in line, containers of running pods first (0: one per CPU)."},
	{"cgroup-manager", "Cgroup driver, cgroupfs or systemd; must match the kubelet's cgroupDriver."},
	{"conmon-path", "Path of the conmon-go monitor; empty: conmon-go next to the noded binary."},
	{"pause-path", "Path of the static pause binary for the built-in pause image; empty: noded-pause next to the noded binary."},
	{"criu-path", "Path of the criu binary (named criu) of CheckpointContainer and restores; empty: criu on noded's PATH, and without one they fail."},
	{"seccomp-profile-root", "Directory that Localhost seccomp profiles must lie in (e.g. /var/lib/kubelet/seccomp); empty: any absolute path."},
	{"seccomp-when-empty", "Seccomp of a container whose request names no profile (the kubelet always names one): runtime-default or unconfined."},
	{"cdi-spec-dirs", "CDI device spec directories, later ones winning; read again at each CreateContainer that asks for a CDI device; empty turns CDI off (comma-separated on the command line)."},
	{"shutdown-timeout", "How long SIGTERM waits for in-flight requests before closing them."},
	{"stream-address", "IP address of the streaming server that the URLs of Exec, Attach and PortForward point to."},
	{"stream-port", "Port of the streaming server; 0 picks a free port at start."},
	{"stream-idle-timeout", "Close a streaming connection (exec, attach, port-forward) idle for this long."},
	{"stream-tls-cert", "TLS certificate of the streaming server (PEM); empty: plain HTTP."},
	{"stream-tls-key", "Private key of stream-tls-cert (PEM)."},
	{"stream-tls-ca", "CA bundle (PEM) that streaming clients' certificates must be signed by; empty: no client certificates."},
	{"nri-enable", "Run NRI (Node Resource Interface) plugins: pre-installed ones from nri-plugin-dir, and any that connect to nri-listen."},
	{"nri-listen", "Unix socket NRI plugins connect to."},
	{"nri-plugin-dir", "Directory of pre-installed NRI plugins (executables named <index>-<name>) that noded starts."},
	{"nri-plugin-config-dir", "Directory of the configuration of pre-installed NRI plugins (<index>-<name>.conf or <name>.conf)."},
	{"nri-plugin-registration-timeout", "How long an NRI plugin may take to register; one that does not is disconnected."},
	{"nri-plugin-request-timeout", "How long an NRI plugin may take to answer an event; one that does not is disconnected and the operation goes on without it."},
}

// Help returns the documentation of key, or "" for an unknown key.
func Help(key string) string {
	for _, k := range Keys {
		if k.Name == key {
			return k.Help
		}
	}
	return ""
}

// TOML renders the configuration as a commented TOML file that Load accepts.
func (c *Config) TOML() ([]byte, error) {
	var enc bytes.Buffer
	if err := toml.NewEncoder(&enc).Encode(c); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString("# noded configuration (/etc/noded/noded.toml). Every key is also a\n")
	out.WriteString("# command-line flag of the same name; drop-ins in /etc/noded/noded.toml.d.\n")
	for _, line := range strings.Split(strings.TrimRight(enc.String(), "\n"), "\n") {
		if key, _, ok := strings.Cut(line, " = "); ok {
			if h := Help(key); h != "" {
				out.WriteString("\n# " + h + "\n")
			}
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes(), nil
}
