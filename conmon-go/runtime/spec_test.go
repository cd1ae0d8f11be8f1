package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

func TestAdjustSpec(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	host := hostLimits{
		bounding:       map[string]bool{"CAP_CHOWN": true, "CAP_KILL": true},
		sysResource:    false,
		oomScoreAdj:    0,
		seccompEnabled: false,
	}
	adj := -998
	s := &specs.Spec{
		Process: &specs.Process{
			Args: []string{"x"},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_KILL"},
				Effective: []string{"CAP_SYS_RESOURCE"},
			},
			OOMScoreAdj:     &adj,
			ApparmorProfile: "runtime/default",
		},
	}
	if err := adjustSpec(s, host, log); err != nil {
		t.Fatal(err)
	}
	if got := s.Process.Capabilities.Bounding; !reflect.DeepEqual(got, []string{"CAP_CHOWN", "CAP_KILL"}) {
		t.Errorf("bounding %v", got)
	}
	if got := s.Process.Capabilities.Effective; len(got) != 0 {
		t.Errorf("effective %v", got)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj %d, want it raised to 0", *s.Process.OOMScoreAdj)
	}
	// With CAP_SYS_RESOURCE a negative score is kept.
	adj = -998
	s.Process.OOMScoreAdj = &adj
	host.sysResource = true
	_ = adjustSpec(s, host, log)
	if *s.Process.OOMScoreAdj != -998 {
		t.Errorf("oom_score_adj changed to %d with CAP_SYS_RESOURCE", *s.Process.OOMScoreAdj)
	}
	// A seccomp profile needs a runtime built with seccomp.
	s.Linux = &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}}
	if err := adjustSpec(s, host, log); err == nil {
		t.Error("seccomp profile accepted without seccomp support")
	}
	host.seccompEnabled = true
	if err := adjustSpec(s, host, log); err != nil {
		t.Error(err)
	}
}

func TestNewProcess(t *testing.T) {
	p := &specs.Process{
		Args: []string{"sh"}, Env: []string{"A=1"}, Cwd: "/w",
		User:    specs.User{UID: 1000, GID: 100, AdditionalGids: []uint32{5, 6}},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}},
	}
	lp, err := newProcess(p)
	if err != nil {
		t.Fatal(err)
	}
	if lp.UID != 1000 || lp.GID != 100 || !reflect.DeepEqual(lp.AdditionalGroups, []int{5, 6}) || lp.Cwd != "/w" {
		t.Errorf("%+v", lp)
	}
	if len(lp.Rlimits) != 1 || lp.Rlimits[0].Hard != 10 || lp.Rlimits[0].Soft != 5 {
		t.Errorf("rlimits %+v", lp.Rlimits)
	}
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}
	if _, err := newProcess(p); err == nil {
		t.Error("unknown rlimit accepted")
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"process":{"args":["sh"]},"root":{"path":"rootfs"}}`)
	s, err := readSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != filepath.Join(dir, "rootfs") {
		t.Errorf("relative root resolved to %q", s.Root.Path)
	}
	for _, bad := range []string{`{"root":{"path":"r"}}`, `{"process":{"args":[]},"root":{"path":"r"}}`, `{"process":{"args":["sh"]}}`} {
		write(bad)
		if _, err := readSpec(dir); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
