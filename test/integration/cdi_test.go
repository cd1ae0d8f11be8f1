//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cdiSpec is a CDI spec of kind noded.test/<class> whose device "null" is
// the host's /dev/null as /dev/noded-null, with a variable, a read-only
// mount of mountDir and a createRuntime hook (run by the runtime on the
// host) that writes hookFile.
func cdiSpec(class, mountDir, hookFile string) string {
	return fmt.Sprintf(`{
  "cdiVersion": "0.6.0",
  "kind": "noded.test/%s",
  "devices": [{
    "name": "null",
    "containerEdits": {
      "deviceNodes": [{"path": "/dev/noded-null", "hostPath": "/dev/null"}],
      "env": ["NODED_CDI=%s"],
      "mounts": [{"hostPath": %q, "containerPath": "/cdi", "options": ["ro", "rbind"]}]
    }
  }],
  "containerEdits": {
    "hooks": [{"hookName": "createRuntime", "path": "/bin/sh", "args": ["sh", "-c", "echo ran >> %s"]}]
  }
}`, class, class, mountDir, hookFile)
}

// TestCDIDevices: CDI devices named in CDI_devices or in a device plugin's
// cdi.k8s.io/ annotation get their device node (under another name than
// the host's), variable, mount and hook; a spec written after noded
// started is found without a restart; an unknown device fails
// CreateContainer with InvalidArgument naming it, leaving nothing behind,
// and the same name can then be created.
func TestCDIDevices(t *testing.T) {
	static, dynamic := t.TempDir(), t.TempDir()
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "file"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hookFile := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(filepath.Join(static, "gpu.json"), []byte(cdiSpec("gpu", share, hookFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newPodEnv(t, "--cdi-spec-dirs", static+","+dynamic)
	ctx := context.Background()
	pod, _, _ := e.runPod(t, "cdi", []string{"sleep", "3600"})
	pcfg := e.podConfig("cdi")

	// Written while noded runs, as a DRA driver writes its specs.
	if err := os.WriteFile(filepath.Join(dynamic, "late.json"), []byte(cdiSpec("late", share, hookFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		devices     []*runtimeapi.CDIDevice
		annotations map[string]string
		env         string
	}{
		{name: "cdi-devices", devices: []*runtimeapi.CDIDevice{{Name: "noded.test/gpu=null"}}, env: "gpu"},
		{name: "annotation", annotations: map[string]string{"cdi.k8s.io/noded.test_late0": "noded.test/late=null"}, env: "late"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countLines(hookFile)
			ctr := e.startContainer(t, pod, pcfg, tc.name, &runtimeapi.ContainerConfig{
				Command: []string{"sleep", "3600"}, CDIDevices: tc.devices, Annotations: tc.annotations,
			})
			resp, err := e.exec(t, ctr, 10, "sh", "-c",
				`test -c /dev/noded-null && echo x > /dev/noded-null && stat -c dev=%t:%T /dev/noded-null && echo "env=$NODED_CDI" && cat /cdi/file && ! touch /cdi/new`)
			if err != nil || resp.GetExitCode() != 0 {
				t.Fatalf("in the container: %v %s %s", err, resp.GetStdout(), resp.GetStderr())
			}
			out := string(resp.GetStdout())
			// /dev/null is char 1, 3.
			if !strings.Contains(out, "dev=1:3") || !strings.Contains(out, "env="+tc.env) || !strings.Contains(out, "from the host") {
				t.Errorf("container sees:\n%s", out)
			}
			if after := countLines(hookFile); after != before+1 {
				t.Errorf("the createRuntime hook ran %d times, want once", after-before)
			}
		})
	}

	t.Run("unknown device", func(t *testing.T) {
		baseline := e.held(t)
		cfg := &runtimeapi.ContainerConfig{
			Metadata:   &runtimeapi.ContainerMetadata{Name: "unknown"},
			Image:      &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:    []string{"sleep", "3600"},
			LogPath:    "unknown.log",
			CDIDevices: []*runtimeapi.CDIDevice{{Name: "noded.test/gpu=null"}, {Name: "noded.test/gpu=nope"}},
		}
		_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "noded.test/gpu=nope") {
			t.Fatalf("CreateContainer with an unknown CDI device: %v, want InvalidArgument naming it", err)
		}
		if h := e.held(t); !equalHeld(h, baseline) {
			t.Errorf("the failed create left %+v; before it: %+v", h, baseline)
		}
		list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list.GetContainers() {
			if c.GetMetadata().GetName() == "unknown" {
				t.Errorf("the failed container is listed: %v", c)
			}
		}
		// The name was released: the corrected request succeeds.
		cfg.CDIDevices = cfg.CDIDevices[:1]
		if _, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg}); err != nil {
			t.Fatalf("the retry: %v", err)
		}
	})

	t.Run("malformed name", func(t *testing.T) {
		_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "malformed"}, Image: &runtimeapi.ImageSpec{Image: busyboxImage},
			Command: []string{"true"}, CDIDevices: []*runtimeapi.CDIDevice{{Name: "gpu0"}},
		}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "gpu0") {
			t.Fatalf("CreateContainer with a malformed CDI name: %v, want InvalidArgument naming it", err)
		}
	})
}

// countLines counts the lines of a file, 0 when it is missing.
func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
