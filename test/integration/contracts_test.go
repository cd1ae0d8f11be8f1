//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIContracts checks the smaller CRI contracts of Kubernetes 1.37 over
// the socket: the image's one identifier (KubeletEnsureSecretPulledImages
// compares them), pinned images, ImageSpec.runtime_handler, ImageFsInfo's
// two lists, ContainerStatus.stop_signal, Mount.mount_options and a log
// directory that does not exist yet.
func TestCRIContracts(t *testing.T) {
	e := newPodEnv(t, "--pinned-images", "registry.k8s.io/e2e-test-images/*")
	ctx := context.Background()
	pod, ctr, _ := e.runPod(t, "contracts", []string{"sleep", "3600"})
	pcfg := e.podConfig("contracts")

	t.Run("image_ref is the image's id everywhere", func(t *testing.T) {
		pull, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}})
		if err != nil {
			t.Fatal(err)
		}
		ref := pull.GetImageRef()
		if !strings.HasPrefix(ref, "sha256:") {
			t.Errorf("image_ref %q is not an image ID", ref)
		}
		st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{"ImageStatus Image.id": st.GetImage().GetId()}
		// By digest and by ID too: the kubelet asks with image_ref.
		for _, r := range append(slices.Clone(st.GetImage().GetRepoDigests()), ref) {
			byRef, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: r}})
			if err != nil {
				t.Fatal(err)
			}
			ids["ImageStatus("+r+") Image.id"] = byRef.GetImage().GetId()
		}
		list, err := e.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range list.GetImages() {
			if slices.Contains(img.GetRepoTags(), busyboxImage) {
				ids["ListImages Image.id"] = img.GetId()
			}
		}
		cs, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		ids["ContainerStatus.image_id"] = cs.GetStatus().GetImageId()
		ids["ContainerStatus.image_ref"] = cs.GetStatus().GetImageRef()
		ctrs, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: ctr}})
		if err != nil || len(ctrs.GetContainers()) != 1 {
			t.Fatalf("ListContainers: %v %v", ctrs, err)
		}
		ids["Container.image_id"] = ctrs.GetContainers()[0].GetImageId()
		ids["Container.image_ref"] = ctrs.GetContainers()[0].GetImageRef()
		if len(ids) < 7 {
			t.Errorf("only %v found", ids)
		}
		for what, id := range ids {
			if id != ref {
				t.Errorf("%s = %q, PullImageResponse.image_ref = %q", what, id, ref)
			}
		}
	})

	t.Run("pinned images", func(t *testing.T) {
		list, err := e.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, img := range list.GetImages() {
			// busybox by the pinned-images pattern, the pause image always.
			if slices.Contains(img.GetRepoTags(), busyboxImage) || slices.Contains(img.GetRepoTags(), "localhost/noded/pause:builtin") {
				seen++
				if !img.GetPinned() {
					t.Errorf("%v is not pinned", img.GetRepoTags())
				}
			}
		}
		if seen != 2 {
			t.Errorf("found %d of busybox and the pause image in %v", seen, list.GetImages())
		}
	})

	t.Run("runtime_handler", func(t *testing.T) {
		for _, h := range []string{"", "runc"} {
			if _, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage, RuntimeHandler: h}}); err != nil {
				t.Errorf("PullImage for handler %q: %v", h, err)
			}
			st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage, RuntimeHandler: h}})
			if err != nil || st.GetImage() == nil {
				t.Errorf("ImageStatus for handler %q: %v %v", h, st, err)
			}
		}
		_, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage, RuntimeHandler: "no-such-handler"}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no-such-handler") {
			t.Errorf("PullImage for an unknown handler: %v, want InvalidArgument naming it", err)
		}
	})

	t.Run("ImageFsInfo", func(t *testing.T) {
		fs, err := e.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for what, list := range map[string][]*runtimeapi.FilesystemUsage{"image": fs.GetImageFilesystems(), "container": fs.GetContainerFilesystems()} {
			if len(list) != 1 {
				t.Fatalf("%s filesystems %v", what, list)
			}
			u := list[0]
			if fi, err := os.Stat(u.GetFsId().GetMountpoint()); err != nil || !fi.IsDir() {
				t.Errorf("%s filesystem mountpoint %q: %v", what, u.GetFsId().GetMountpoint(), err)
			}
			if u.GetTimestamp() <= 0 || u.GetUsedBytes() == nil || u.GetInodesUsed() == nil {
				t.Errorf("%s filesystem usage %v", what, u)
			}
		}
		// A running container's writable layer holds at least its directories.
		if fs.GetContainerFilesystems()[0].GetInodesUsed().GetValue() == 0 {
			t.Errorf("container filesystem has no inodes with a container running: %v", fs.GetContainerFilesystems())
		}
	})

	t.Run("stop_signal", func(t *testing.T) {
		usr1 := e.startContainer(t, pod, pcfg, "usr1", &runtimeapi.ContainerConfig{
			Command: []string{"sleep", "3600"}, StopSignal: runtimeapi.Signal_SIGNAL_SIGUSR1,
		})
		for id, want := range map[string]runtimeapi.Signal{ctr: runtimeapi.Signal_SIGNAL_SIGTERM, usr1: runtimeapi.Signal_SIGNAL_SIGUSR1} {
			st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			if err != nil {
				t.Fatal(err)
			}
			if got := st.GetStatus().GetStopSignal(); got != want {
				t.Errorf("container %s stop_signal %v, want %v", id, got, want)
			}
		}
	})

	t.Run("mount_options", func(t *testing.T) {
		st, err := e.rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !st.GetFeatures().GetMountOptions() {
			t.Errorf("Status features %v do not advertise mount_options", st.GetFeatures())
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		mounts := []*runtimeapi.Mount{
			{ContainerPath: "/noexec", HostPath: dir, MountOptions: []string{"noexec", "nodev", "nosuid"}},
			{ContainerPath: "/plain", HostPath: dir},
		}
		id := e.startContainer(t, pod, pcfg, "mountopts", &runtimeapi.ContainerConfig{Command: []string{"sleep", "3600"}, Mounts: mounts})
		opts := mountOptions(t, e.containerPid(t, id))
		for _, o := range []string{"noexec", "nodev", "nosuid"} {
			if !slices.Contains(opts["/noexec"], o) {
				t.Errorf("/noexec options %v lack %s", opts["/noexec"], o)
			}
		}
		if slices.Contains(opts["/plain"], "noexec") {
			t.Errorf("/plain options %v have noexec", opts["/plain"])
		}
		if resp, err := e.exec(t, id, 10, "/plain/run.sh"); err != nil || resp.GetExitCode() != 0 {
			t.Errorf("running from /plain: %v %+v", err, resp)
		}
		if resp, err := e.exec(t, id, 10, "/noexec/run.sh"); err == nil && resp.GetExitCode() == 0 {
			t.Errorf("a program ran from the noexec mount: %+v", resp)
		}
		_, err = e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "badopt"}, Image: &runtimeapi.ImageSpec{Image: busyboxImage}, Command: []string{"true"},
			Mounts: []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: dir, MountOptions: []string{"suid"}}},
		}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "suid") {
			t.Errorf("an unknown mount option: %v, want InvalidArgument naming it", err)
		}
	})

	t.Run("a log directory that does not exist yet", func(t *testing.T) {
		lcfg := e.podConfig("newlogs")
		lcfg.LogDirectory = filepath.Join(e.logDir, "not", "yet", "newlogs")
		if _, err := os.Stat(lcfg.LogDirectory); err == nil {
			t.Fatalf("%s exists", lcfg.LogDirectory)
		}
		lpod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: lcfg})
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: lpod.GetPodSandboxId(), SandboxConfig: lcfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: busyboxImage},
			Command: []string{"echo", "hello from a new log directory"},
			// The kubelet's layout: <container name>/<restart count>.log.
			LogPath: "app/0.log",
		}})
		if err != nil {
			t.Fatalf("CreateContainer: %v\n%s", err, e.d.Log)
		}
		for _, d := range []string{lcfg.LogDirectory, filepath.Join(lcfg.LogDirectory, "app")} {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v, want a 0755 directory", d, fi.Mode())
			}
		}
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
			t.Fatal(err)
		}
		e.waitExited(t, c.GetContainerId(), 30*time.Second)
		b, err := os.ReadFile(filepath.Join(lcfg.LogDirectory, "app", "0.log"))
		if err != nil || !strings.Contains(string(b), "hello from a new log directory") {
			t.Errorf("log: %q %v", b, err)
		}
	})
}
