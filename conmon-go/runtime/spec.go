package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/apparmor"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// hostLimits are what the monitor itself may grant: a container cannot get
// more than its parent has.
type hostLimits struct {
	bounding       map[string]bool // CAP_* names in our bounding set
	sysResource    bool            // CAP_SYS_RESOURCE in our effective set
	oomScoreAdj    int             // our own oom_score_adj
	seccompEnabled bool            // built with -tags seccomp and libseccomp
}

// host is probeHost, run once per helper.
var host = sync.OnceValue(probeHost)

func probeHost() hostLimits {
	h := hostLimits{bounding: map[string]bool{}}
	for _, c := range capability.ListKnown() {
		if ok, err := capability.GetBound(c); err == nil && ok {
			h.bounding["CAP_"+strings.ToUpper(c.String())] = true
		}
	}
	if caps, err := capability.NewPid2(0); err == nil && caps.Load() == nil {
		h.sysResource = caps.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE)
	}
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		h.oomScoreAdj, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	major, _, _ := seccomp.Version()
	h.seccompEnabled = major > 0
	return h
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

// adjustSpec fits the spec to what this host and monitor can do, logging
// every change: capabilities outside our bounding set are dropped (a
// privileged container asks for all of them, and this host's root may lack
// some), an oom_score_adj below ours is raised to ours without
// CAP_SYS_RESOURCE (the kernel refuses it), and an AppArmor profile is
// ignored when AppArmor is disabled.
func adjustSpec(s *specs.Spec, h hostLimits, log *logrus.Entry) error {
	p := s.Process
	if c := p.Capabilities; c != nil {
		var dropped []string
		filter := func(in []string) []string {
			out := in[:0:0]
			for _, name := range in {
				if h.bounding[name] {
					out = append(out, name)
				} else if !contains(dropped, name) {
					dropped = append(dropped, name)
				}
			}
			return out
		}
		c.Bounding = filter(c.Bounding)
		c.Effective = filter(c.Effective)
		c.Permitted = filter(c.Permitted)
		c.Inheritable = filter(c.Inheritable)
		c.Ambient = filter(c.Ambient)
		if len(dropped) > 0 {
			log.Warnf("capabilities not available to the monitor, dropped: %s", strings.Join(dropped, ","))
		}
	}
	if p.OOMScoreAdj != nil && *p.OOMScoreAdj < h.oomScoreAdj && !h.sysResource {
		log.Warnf("oom_score_adj %d needs CAP_SYS_RESOURCE, using %d", *p.OOMScoreAdj, h.oomScoreAdj)
		v := h.oomScoreAdj
		p.OOMScoreAdj = &v
	}
	if p.ApparmorProfile != "" && !apparmor.IsEnabled() {
		log.Infof("AppArmor is disabled, ignoring profile %q", p.ApparmorProfile)
		p.ApparmorProfile = ""
	}
	if s.Linux != nil && s.Linux.Seccomp != nil && !h.seccompEnabled {
		return fmt.Errorf("the spec has a seccomp profile but conmon-go was built without seccomp support (go build -tags seccomp, with libseccomp-dev)")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// libcontainerConfig converts the spec. specconv resolves relative paths
// against the working directory (runc runs in the bundle), so it runs with
// the bundle as cwd; the caller holds opMu, which serialises chdir.
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
