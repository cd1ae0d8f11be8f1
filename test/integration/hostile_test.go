//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestHostileRequests sends requests a buggy or hostile client could send
// over the socket: each gets a clear InvalidArgument (or the code named)
// and leaves nothing half-made (no record, storage container, mount,
// network namespace, address or process); 500 List and Status calls at
// once all answer, and leave no goroutine behind.
func TestHostileRequests(t *testing.T) {
	e, metricsAddr := newMetricsPodEnv(t)
	baseline := e.baseline(t)
	pod, ctr, _ := e.runPod(t, "hostile", []string{"sleep", "3600"})
	pcfg := e.podConfig("hostile")
	ctx := context.Background()
	// Host paths the requests name: a directory reached through a
	// relative symlink, symlinks to nothing, a FIFO and an endless file
	// where a seccomp profile is expected.
	host := t.TempDir()
	mkdir(t, filepath.Join(host, "real"))
	if err := os.WriteFile(filepath.Join(host, "real", "marker"), []byte("found"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "real", filepath.Join(host, "relative-link"))
	symlink(t, filepath.Join(host, "nothing"), filepath.Join(host, "dangling"))
	fifo := filepath.Join(host, "profile.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	localhost := func(ref string) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
		}
	}
	mount := func(ctrPath, hostPath string) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: ctrPath, HostPath: hostPath}}
		}
	}
	// Every refused request leaves the node as it is with the pod running.
	held := e.held(t)
	unchanged := func(t *testing.T) {
		t.Helper()
		if h := e.held(t); !equalHeld(h, held) {
			t.Errorf("after the refusal the node holds %+v, before it %+v", h, held)
		}
		if list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(list.GetContainers()) != 1 {
			t.Errorf("containers after the refusal: %v %v", list, err)
		}
		if pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.GetItems()) != 1 {
			t.Errorf("pods after the refusal: %v %v", pods, err)
		}
	}

	base := func() *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "bad"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"true"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
		}
	}
	containers := []struct {
		name string
		edit func(*runtimeapi.ContainerConfig)
		code codes.Code
	}{
		{"log path escaping the log directory", func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../../../tmp/escape.log" }, codes.InvalidArgument},
		{"absolute log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "/tmp/escape.log" }, codes.InvalidArgument},
		{"relative mount source", mount("/data", "relative/dir"), codes.InvalidArgument},
		{"relative mount destination", mount("data", "/tmp"), codes.InvalidArgument},
		{"mount destination with ..", mount("/data/../../etc", host), codes.InvalidArgument},
		{"mount source with ..", mount("/data", host+"/real/../../../etc"), codes.InvalidArgument},
		// Symlinks are resolved on the host, as containerd and CRI-O do; one
		// to nothing is refused rather than having its target made.
		{"mount source a symlink to nothing", mount("/data", filepath.Join(host, "dangling")), codes.FailedPrecondition},
		{"mount source below a symlink to nothing", mount("/data", filepath.Join(host, "dangling", "sub")), codes.FailedPrecondition},
		{"oversized name", func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = strings.Repeat("n", 70000) }, codes.InvalidArgument},
		{"oversized label", func(c *runtimeapi.ContainerConfig) { c.Labels = map[string]string{"k": strings.Repeat("v", 1<<20)} }, codes.InvalidArgument},
		{"negative cpu shares", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: -1}
		}, codes.InvalidArgument},
		{"cpu quota below a millisecond", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuQuota: 10, CpuPeriod: 100000}
		}, codes.InvalidArgument},
		{"negative memory limit", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}
		}, codes.InvalidArgument},
		// The daemon has no profile directory configured (specgen's unit
		// tests cover one): what is refused here is refused anyway.
		{"seccomp profile leaving its directory with ..", localhost("/var/lib/kubelet/seccomp/../../../../etc/shadow"), codes.InvalidArgument},
		{"seccomp profile that is a relative path", localhost("profiles/p.json"), codes.InvalidArgument},
		{"seccomp profile that is no profile", localhost("/etc/shadow"), codes.InvalidArgument},
		{"seccomp profile missing", localhost(filepath.Join(host, "none.json")), codes.NotFound},
		{"seccomp profile through a symlink to nothing", localhost(filepath.Join(host, "dangling")), codes.NotFound},
		// Neither may have noded read forever or wait for a writer.
		{"seccomp profile an endless device", localhost("/dev/zero"), codes.InvalidArgument},
		{"seccomp profile a FIFO", localhost(fifo), codes.InvalidArgument},
		{"seccomp profile a directory", localhost(host), codes.InvalidArgument},
		{"unknown image", func(c *runtimeapi.ContainerConfig) { c.Image.Image = "localhost/none:1" }, codes.NotFound},
	}
	for i, tc := range containers {
		t.Run("CreateContainer: "+tc.name, func(t *testing.T) {
			c := base()
			c.Metadata.Name = fmt.Sprintf("bad%d", i) // a refused create reserves no name
			tc.edit(c)
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := e.rt.CreateContainer(cctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: c})
			if status.Code(err) != tc.code {
				t.Errorf("got %v, want %v", err, tc.code)
			}
			unchanged(t)
		})
	}
	if _, err := os.Lstat(filepath.Join(host, "nothing")); err == nil {
		t.Error("a refused mount made its symlink's target")
	}
	t.Run("a mount source through a relative symlink is resolved on the host", func(t *testing.T) {
		c := base()
		c.Command = []string{"sleep", "3600"}
		mount("/data", filepath.Join(host, "relative-link"))(c)
		id := e.startContainer(t, pod, pcfg, "linked", c)
		resp, err := e.exec(t, id, 10, "cat", "/data/marker")
		if err != nil || string(resp.GetStdout()) != "found" {
			t.Errorf("the linked directory in the container: %v %+v", err, resp)
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		unchanged(t)
	})
	pods := []struct {
		name string
		edit func(*runtimeapi.PodSandboxConfig)
	}{
		{"a sysctl of the host, not of the pod's namespaces", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.panic": "1"}
		}},
		{"a network sysctl on a host-network pod", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}},
		{"oversized uid", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = strings.Repeat("u", 70000) }},
		{"oversized annotations", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"a": strings.Repeat("v", 1<<20)}
		}},
	}
	for i, tc := range pods {
		t.Run("RunPodSandbox: "+tc.name, func(t *testing.T) {
			c := e.podConfig(fmt.Sprintf("badpod%d", i))
			tc.edit(c)
			resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: c})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("got %v (pod %q), want InvalidArgument", err, resp.GetPodSandboxId())
			}
			unchanged(t)
		})
	}
	t.Run("500 List and Status calls at once", func(t *testing.T) {
		// Warm up, so that lazily made things count in the baseline.
		if _, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr}); err != nil {
			t.Fatal(err)
		}
		routines := goroutines(t, metricsAddr)
		calls := []func() error{
			func() error { _, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); return err },
			func() error { _, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); return err },
			func() error {
				_, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr, Verbose: true})
				return err
			},
		}
		var wg sync.WaitGroup
		errs := make(chan error, 500)
		for i := range 500 {
			wg.Go(func() {
				if err := calls[i%len(calls)](); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("a call failed: %v", err)
		}
		// Slack of a few: the metrics requests themselves come and go.
		waitFor(t, 15*time.Second, func() bool { return goroutines(t, metricsAddr) <= routines+5 })
		t.Logf("goroutines after 500 calls at once: %d (before: %d)", goroutines(t, metricsAddr), routines)
		unchanged(t)
	})
	e.removeAllLeaving(t, baseline)
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestSeccompProfileRoot: with seccomp-profile-root set, a Localhost
// profile inside it confines the container, and one outside it (named
// directly, or through a symlink inside the root) is InvalidArgument,
// however valid the file.
func TestSeccompProfileRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	profile := []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`)
	for _, dir := range []string{root, outside} {
		if err := os.WriteFile(filepath.Join(dir, "allow.json"), profile, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, filepath.Join(outside, "allow.json"), filepath.Join(root, "escape.json"))
	e := newPodEnv(t, "--seccomp-profile-root", root)
	pod, _, _ := e.runPod(t, "profiles", []string{"sleep", "3600"})
	pcfg := e.podConfig("profiles")
	ctx := context.Background()
	for _, tc := range []struct {
		name, ref string
		want      codes.Code
	}{
		{"inside", filepath.Join(root, "allow.json"), codes.OK},
		{"outside", filepath.Join(outside, "allow.json"), codes.InvalidArgument},
		{"symlink out", filepath.Join(root, "escape.json"), codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sleeperRequest(pod, pcfg)
			req.Config.Metadata.Name = "seccomp-" + strings.ReplaceAll(tc.name, " ", "-")
			req.Config.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: tc.ref}}}
			resp, err := e.rt.CreateContainer(ctx, req)
			if status.Code(err) != tc.want {
				t.Fatalf("CreateContainer with profile %s: %v, want %v", tc.ref, err, tc.want)
			}
			if err != nil {
				return
			}
			if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()}); err != nil {
				t.Fatal(err)
			}
			r, err := e.exec(t, resp.GetContainerId(), 10, "grep", "^Seccomp:", "/proc/self/status")
			if err != nil || !strings.Contains(string(r.GetStdout()), "2") {
				t.Fatalf("the profile does not confine: %q %v", r.GetStdout(), err)
			}
		})
	}
}
