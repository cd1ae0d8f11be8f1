//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestHostileRequests sends requests a buggy or hostile client could send
// over the socket: each gets a clear InvalidArgument (or the code named)
// and leaves nothing half-made; 500 List calls at once all answer.
func TestHostileRequests(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	pod, _, _ := e.runPod(t, "hostile", []string{"sleep", "3600"})
	pcfg := e.podConfig("hostile")
	ctx := context.Background()

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
		{"relative mount source", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "relative/dir"}}
		}, codes.InvalidArgument},
		{"relative mount destination", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/tmp"}}
		}, codes.InvalidArgument},
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
		{"seccomp profile outside the allowed directory", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/etc/shadow"}
		}, codes.InvalidArgument},
		{"unknown image", func(c *runtimeapi.ContainerConfig) { c.Image.Image = "localhost/none:1" }, codes.NotFound},
	}
	for i, tc := range containers {
		t.Run("CreateContainer: "+tc.name, func(t *testing.T) {
			c := base()
			c.Metadata.Name = fmt.Sprintf("bad%d", i) // a refused create reserves no name
			tc.edit(c)
			_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: c})
			if status.Code(err) != tc.code {
				t.Errorf("got %v, want %v", err, tc.code)
			}
		})
	}
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
		})
	}
	t.Run("nothing half-made", func(t *testing.T) {
		if pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.GetItems()) != 1 {
			t.Fatalf("pods after the refused creates: %v %v", pods, err)
		}
		list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		if err != nil || len(list.GetContainers()) != 1 {
			t.Fatalf("containers of the pod after the refused creates: %v %v", list, err)
		}
	})
	t.Run("500 List calls at once", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 500)
		for range 500 {
			wg.Go(func() {
				if _, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("a List call failed: %v", err)
		}
	})
	e.removeAllLeaving(t, baseline)
}
