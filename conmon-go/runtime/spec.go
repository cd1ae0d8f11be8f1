package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/apparmor"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// hostLimits are what this helper's build and host support.
//
// Capabilities and oom_score_adj are not fitted here: noded's
// internal/specgen computes both from noded's own (Node.HostCapabilities,
// Node.OOMScoreAdjMin), where a capability the request asks for and noded
// lacks is an error the kubelet sees, not a silent drop. The monitor, and
// so this helper, is started by noded and inherits those same
// capabilities and oom_score_adj, so a spec specgen wrote is one the
// helper can run; a spec asking for more fails the create with
// libcontainer's error. (So would a spec of a noded restarted with more
// privileges than the one that started the pod's monitor: loudly, where
// fitting it here would run the container with less than it was given.)
type hostLimits struct {
	seccompEnabled bool // built with -tags seccomp and libseccomp
}

// host is probeHost, run once per helper.
var host = sync.OnceValue(probeHost)

func probeHost() hostLimits {
	major, _, _ := seccomp.Version()
	return hostLimits{seccompEnabled: major > 0}
}

// readSpec reads <bundle>/config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("config.json: no process")
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, fmt.Errorf("config.json: no root")
	}
	if len(s.Process.Args) == 0 {
		return nil, fmt.Errorf("config.json: empty process.args")
	}
	if !filepath.IsAbs(s.Root.Path) {
		s.Root.Path = filepath.Join(bundle, s.Root.Path)
	}
	return &s, nil
}

// readProcess reads only the process of the bundle's spec, for an exec:
// the container's configuration is libcontainer's state by then. Decoding
// one field of config.json skips the reflection over the whole specs.Spec
// type tree, most of what a full decode costs in a fresh process (~0.5 ms).
func readProcess(bundle string) (*specs.Process, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s struct {
		Process *specs.Process `json:"process"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("config.json: no process")
	}
	return s.Process, nil
}

// adjustProcess drops an AppArmor profile when AppArmor is disabled (and
// logs it), as runc does.
func adjustProcess(p *specs.Process, log *logrus.Entry) {
	if p.ApparmorProfile != "" && !apparmor.IsEnabled() {
		log.Infof("AppArmor is disabled, ignoring profile %q", p.ApparmorProfile)
		p.ApparmorProfile = ""
	}
}

// adjustSpec fits the spec to what this host and build can do: an
// AppArmor profile is ignored (and logged) when AppArmor is disabled, and
// a seccomp profile without seccomp support is an error. Capabilities and
// oom_score_adj are noded's (see hostLimits).
func adjustSpec(s *specs.Spec, h hostLimits, log *logrus.Entry) error {
	adjustProcess(s.Process, log)
	if s.Linux != nil && s.Linux.Seccomp != nil && !h.seccompEnabled {
		return fmt.Errorf("the spec has a seccomp profile but conmon-go was built without seccomp support (go build -tags seccomp, with libseccomp-dev)")
	}
	return nil
}

// libcontainerConfig converts the spec. specconv resolves relative paths
// against the working directory (runc runs in the bundle), so it runs with
// the bundle as cwd. A helper process serves one request, so nothing
// else in it depends on the working directory meanwhile.
func libcontainerConfig(id, bundle string, s *specs.Spec) (*configs.Config, error) {
	if err := os.Chdir(bundle); err != nil {
		return nil, err
	}
	defer os.Chdir("/") //nolint:errcheck
	return specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: false,
		Spec:             s,
	})
}

// newProcess converts spec.Process (as runc's utils_linux.go does).
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		t, ok := rlimits[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	lp.CPUAffinity = aff
	return lp, nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}
