//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crioDefaultCaps is CRI-O's default capability set (1.18 and later), the
// one noded gives a container that asks for nothing else.
var crioDefaultCaps = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL",
}

// capMask is the /proc/<pid>/status mask of capability names.
func capMask(t *testing.T, names []string) string {
	t.Helper()
	var m uint64
	for _, n := range names {
		i := slices.IndexFunc(capability.ListKnown(), func(c capability.Cap) bool { return strings.EqualFold(c.String(), n) })
		if i < 0 {
			t.Fatalf("unknown capability %s", n)
		}
		m |= 1 << uint(capability.ListKnown()[i])
	}
	return fmt.Sprintf("%016x", m)
}

// The OCI (runc) and CRI-O defaults: masked (an empty file or directory in
// the container) and read-only.
var (
	defaultMasked = []string{
		"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
	}
	defaultReadonly = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// containerPid reads a running container's pid from its verbose status.
func (e *podEnv) containerPid(t *testing.T, ctr string) int {
	t.Helper()
	st, err := e.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return infoPid(t, "container "+ctr, st.GetInfo())
}

// infoPid is the pid in the info of a verbose pod or container status.
func infoPid(t *testing.T, what string, info map[string]string) int {
	t.Helper()
	var v struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil || v.Pid <= 0 {
		t.Fatalf("%s verbose info %v: %v", what, info, err)
	}
	return v.Pid
}

// newMetricsPodEnv is newPodEnv with noded serving /metrics (for
// goroutines), and the address it serves them on.
func newMetricsPodEnv(t *testing.T, extraArgs ...string) (*podEnv, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return newPodEnv(t, append([]string{"--metrics-address", addr}, extraArgs...)...), addr
}

// mountOptions maps the mount points of pid's mount namespace to their
// per-mount options (the last mount at a point wins, as it is the one seen).
func mountOptions(t *testing.T, pid int) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 5 {
			out[f[4]] = strings.Split(f[5], ",")
		}
	}
	return out
}

// startContainer creates and starts cfg (given a name, image and log) in a
// pod and returns its ID.
func (e *podEnv) startContainer(t *testing.T, pod string, pcfg *runtimeapi.PodSandboxConfig, name string, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	cfg.Metadata = &runtimeapi.ContainerMetadata{Name: name}
	cfg.Image = &runtimeapi.ImageSpec{Image: busyboxImage}
	cfg.LogPath = name + ".log"
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v\n%s", name, err, e.d.Log)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer %s: %v\n%s", name, err, e.d.Log)
	}
	return c.GetContainerId()
}

// strictContainerDefaults checks, from /proc of a container's init and of
// a process exec'd into it, that a container asking for nothing runs as
// CRI-O's would: runtime-default seccomp filter, CRI-O's capabilities,
// masked and read-only /proc and /sys paths, a nosuid, nodev, noexec
// /dev/shm; and that each relaxation happens only when asked for.
func strictContainerDefaults(t *testing.T, e *podEnv, pod, ctr string) {
	ctx := context.Background()
	pcfg := e.podConfig("strict")
	privPcfg := e.podConfig("strict-priv")
	privPcfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	if err := os.MkdirAll(privPcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	privPod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: privPcfg})
	if err != nil {
		t.Fatalf("privileged pod: %v", err)
	}
	sleep := []string{"sleep", "3600"}
	withSC := func(sc *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Command: sleep, Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}}
	}
	defaultCaps := capMask(t, crioDefaultCaps)
	tests := []struct {
		name string
		// ctr is the container; "" starts one from pod and cfg.
		ctr, pod string
		pcfg     *runtimeapi.PodSandboxConfig
		cfg      *runtimeapi.ContainerConfig
		// status are the /proc/<pid>/status fields wanted.
		status map[string]string
		masked bool
	}{
		{name: "nothing asked for", ctr: ctr,
			status: map[string]string{"Seccomp": "2", "NoNewPrivs": "0", "CapEff": defaultCaps, "CapBnd": defaultCaps, "CapPrm": defaultCaps},
			masked: true},
		{name: "seccomp Unconfined", pod: pod, pcfg: pcfg,
			cfg: withSC(&runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}),
			status: map[string]string{"Seccomp": "0", "NoNewPrivs": "0", "CapEff": defaultCaps},
			masked: true},
		{name: "no_new_privs", pod: pod, pcfg: pcfg,
			cfg:    withSC(&runtimeapi.LinuxContainerSecurityContext{NoNewPrivs: true}),
			status: map[string]string{"Seccomp": "2", "NoNewPrivs": "1", "CapEff": defaultCaps},
			masked: true},
		{name: "an added capability", pod: pod, pcfg: pcfg,
			cfg: withSC(&runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_RAW"}}}),
			status: map[string]string{"CapEff": capMask(t, append(slices.Clone(crioDefaultCaps), "NET_RAW"))},
			masked: true},
		{name: "privileged", pod: privPod.GetPodSandboxId(), pcfg: privPcfg,
			cfg:    withSC(&runtimeapi.LinuxContainerSecurityContext{Privileged: true}),
			status: map[string]string{"Seccomp": "0", "NoNewPrivs": "0"},
			masked: false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.ctr
			if id == "" {
				id = e.startContainer(t, tc.pod, tc.pcfg, fmt.Sprintf("strict%d", i), tc.cfg)
			}
			pid := e.containerPid(t, id)
			// An exec'd process is confined as the container's init.
			resp, err := e.exec(t, id, 10, "cat", "/proc/self/status")
			if err != nil || resp.GetExitCode() != 0 {
				t.Fatalf("exec: %v %+v", err, resp)
			}
			execStatus := map[string]string{}
			for _, l := range strings.Split(string(resp.GetStdout()), "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok {
					execStatus[k] = strings.TrimSpace(v)
				}
			}
			for who, st := range map[string]map[string]string{"init": procStatus(t, pid), "exec'd process": execStatus} {
				for k, want := range tc.status {
					if st[k] != want {
						t.Errorf("%s: %s %q, want %q", who, k, st[k], want)
					}
				}
			}
			mounts := mountOptions(t, pid)
			for _, p := range defaultMasked {
				if _, err := os.Stat(p); err != nil {
					continue // runc masks only what exists
				}
				if _, ok := mounts[p]; ok != tc.masked {
					t.Errorf("%s masked: %v, want %v", p, ok, tc.masked)
				}
			}
			for _, p := range defaultReadonly {
				if _, err := os.Stat(p); err != nil {
					continue
				}
				if ro := slices.Contains(mounts[p], "ro"); ro != tc.masked {
					t.Errorf("%s read-only: %v (options %v), want %v", p, ro, mounts[p], tc.masked)
				}
			}
			shm := mounts["/dev/shm"]
			for _, o := range []string{"nosuid", "nodev", "noexec"} {
				if !slices.Contains(shm, o) {
					t.Errorf("/dev/shm options %v lack %s", shm, o)
				}
			}
		})
	}
	// Seccomp is checked where the kernel says so, not only in the spec: a
	// filtered process has a filter count.
	if n, _ := strconv.Atoi(procStatus(t, e.containerPid(t, ctr))["Seccomp_filters"]); n < 1 {
		t.Errorf("the default container has %d seccomp filters", n)
	}
}
