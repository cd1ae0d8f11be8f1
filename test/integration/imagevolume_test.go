//go:build integration

package integration

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// volumeImage is mounted as an image volume: another image than the
// containers' (busybox), so that only the volume holds it. Its
// /etc/group names a group the busybox image does not have.
const (
	volumeImage   = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	volumeMarker  = "group-defined-in-image"
	volumeMountAt = "/mnt/image-volume"
)

// volumeRequest is a sleeper with volumeImage (as ref, the ID the kubelet
// passes) at volumeMountAt, subPath inside it.
func volumeRequest(pod string, pcfg *runtimeapi.PodSandboxConfig, name, ref, subPath string) *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  name + ".log",
			Mounts: []*runtimeapi.Mount{{
				ContainerPath: volumeMountAt, Readonly: true, ImageSubPath: subPath,
				Image: &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: volumeImage},
			}},
		},
	}
}

func (e *podEnv) pullVolumeImage(t *testing.T) string {
	t.Helper()
	resp, err := e.img.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: volumeImage}})
	if err != nil {
		t.Fatalf("pull %s: %v", volumeImage, err)
	}
	return resp.GetImageRef()
}

// mountLine is the container's /proc/mounts line for path.
func (e *podEnv) mountLine(t *testing.T, ctr, path string) []string {
	t.Helper()
	r, err := e.exec(t, ctr, 10, "cat", "/proc/mounts")
	if err != nil || r.GetExitCode() != 0 {
		t.Fatalf("cat /proc/mounts: %v %s", err, r.GetStderr())
	}
	for _, l := range strings.Split(string(r.GetStdout()), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[1] == path {
			return f
		}
	}
	t.Fatalf("no mount at %s in:\n%s", path, r.GetStdout())
	return nil
}

// TestImageVolumes mounts an image's /etc (image_sub_path) into a
// container: its files are there, read-only (ro, nosuid, nodev, not
// noexec), ContainerStatus reports the image's ID; the image cannot be
// removed while the container exists, and can once it is removed, which
// leaves no mount or storage container. Bad requests (sub path with "..",
// missing sub path, not read-only, image not pulled) fail with their code
// and leave nothing.
func TestImageVolumes(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	ctx := context.Background()
	ref := e.pullVolumeImage(t)
	pcfg := e.podConfig("imgvol")
	if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
		t.Fatal(err)
	}
	podResp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	pod := podResp.GetPodSandboxId()
	withPod := e.held(t)

	badRequests := func(t *testing.T, ref string, cases []struct {
		desc    string
		req     *runtimeapi.CreateContainerRequest
		code    codes.Code
		message string
	}) {
		for _, tc := range cases {
			t.Run(tc.desc, func(t *testing.T) {
				_, err := e.rt.CreateContainer(ctx, tc.req)
				if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.message) {
					t.Fatalf("CreateContainer: %v; want %v with %q", err, tc.code, tc.message)
				}
				if h := e.held(t); !equalHeld(h, withPod) {
					t.Fatalf("a refused create left %+v; before: %+v", h, withPod)
				}
				list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				if err != nil || len(list.GetContainers()) != 0 {
					t.Fatalf("containers after a refused create: %v %v", list.GetContainers(), err)
				}
			})
		}
	}
	notReadOnly := volumeRequest(pod, pcfg, "bad", ref, "")
	notReadOnly.Config.Mounts[0].Readonly = false
	badRequests(t, ref, []struct {
		desc    string
		req     *runtimeapi.CreateContainerRequest
		code    codes.Code
		message string
	}{
		{"sub path with ..", volumeRequest(pod, pcfg, "bad", ref, "etc/../.."), codes.InvalidArgument, `".." component`},
		{"absolute sub path", volumeRequest(pod, pcfg, "bad", ref, "/etc"), codes.InvalidArgument, "not a relative path"},
		{"sub path not in the image", volumeRequest(pod, pcfg, "bad", ref, "not-there"), codes.NotFound, `sub path "not-there" does not exist`},
		{"not read-only", notReadOnly, codes.InvalidArgument, "must be read-only"},
	})

	created, err := e.rt.CreateContainer(ctx, volumeRequest(pod, pcfg, "main", ref, "etc"))
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, e.d.Log)
	}
	ctr := created.GetContainerId()
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}

	r, err := e.exec(t, ctr, 10, "cat", volumeMountAt+"/group")
	if err != nil || r.GetExitCode() != 0 || !strings.Contains(string(r.GetStdout()), volumeMarker) {
		t.Fatalf("the image's /etc/group at %s: %v %q %q", volumeMountAt, err, r.GetStdout(), r.GetStderr())
	}
	if r, err := e.exec(t, ctr, 10, "ls", volumeMountAt+"/etc"); err != nil || r.GetExitCode() == 0 {
		t.Fatalf("the whole image is mounted, not its sub path: %v %q", err, r.GetStdout())
	}
	if r, err := e.exec(t, ctr, 10, "touch", volumeMountAt+"/written"); err != nil || r.GetExitCode() == 0 ||
		!strings.Contains(string(r.GetStderr()), "Read-only file system") {
		t.Fatalf("a write to the image volume: %v, exit %d, %q", err, r.GetExitCode(), r.GetStderr())
	}
	opts := strings.Split(e.mountLine(t, ctr, volumeMountAt)[3], ",")
	for _, want := range []string{"ro", "nosuid", "nodev"} {
		if !slices.Contains(opts, want) {
			t.Errorf("mount options %v lack %s", opts, want)
		}
	}
	if slices.Contains(opts, "noexec") {
		t.Errorf("mount options %v: noexec was not asked for", opts)
	}

	st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil {
		t.Fatal(err)
	}
	ms := st.GetStatus().GetMounts()
	if len(ms) != 1 || ms[0].GetContainerPath() != volumeMountAt || ms[0].GetImage().GetImageRef() != ref ||
		ms[0].GetImage().GetImage() != ref || ms[0].GetImageSubPath() != "etc" {
		t.Fatalf("ContainerStatus.mounts = %v; want the image volume with image_ref %s", ms, ref)
	}

	for _, name := range []string{volumeImage, ref} {
		_, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), ctr+"-image-volume-0") {
			t.Fatalf("RemoveImage(%s) while a container mounts it: %v; want FailedPrecondition naming its volume", name, err)
		}
	}
	if img, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil || img.GetImage() == nil {
		t.Fatalf("the image after the refused removals: %v %v", img, err)
	}

	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	if h := e.held(t); !equalHeld(h, withPod) {
		t.Fatalf("after RemoveContainer the node holds %+v; before the container: %+v", h, withPod)
	}
	if _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("RemoveImage once no container mounts it: %v", err)
	}
	if img, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil || img.GetImage() != nil {
		t.Fatalf("the image after its removal: %v %v", img, err)
	}
	badRequests(t, ref, []struct {
		desc    string
		req     *runtimeapi.CreateContainerRequest
		code    codes.Code
		message string
	}{
		{"image not pulled", volumeRequest(pod, pcfg, "bad", ref, "etc"), codes.NotFound, "image volume at"},
	})
	e.removeAllLeaving(t, baseline)
}

// TestImageVolumeOfStoppedPod: stopping the pod unmounts the volume (a
// stopped pod holds no mount) but keeps the image from removal until the
// pod is removed.
func TestImageVolumeOfStoppedPod(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	ctx := context.Background()
	ref := e.pullVolumeImage(t)
	pcfg := e.podConfig("imgvolstop")
	if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
		t.Fatal(err)
	}
	podResp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	pod := podResp.GetPodSandboxId()
	created, err := e.rt.CreateContainer(ctx, volumeRequest(pod, pcfg, "main", ref, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	h := e.held(t)
	// The pause runs on the built-in image's shared root filesystem.
	if h.StorageContainers != 2 {
		t.Errorf("storage containers of the stopped pod: %d, want 2 (main, its volume) until removal", h.StorageContainers)
	}
	h.StorageContainers = baseline.StorageContainers
	if !equalHeld(h, baseline) {
		t.Fatalf("a stopped pod holds %+v; with no pod: %+v", h, baseline)
	}
	if _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RemoveImage while a container of a stopped pod has it as a volume: %v", err)
	}
	e.removeAllLeaving(t, baseline)
	if _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("RemoveImage once the pod is removed: %v", err)
	}
}

// TestKilledImageVolumeCreates kills noded (its failpoints build) right
// after each step of a CreateContainer with an image volume, restarts it
// and replays the kubelet's retry: the retry succeeds and the container
// reads its volume, the image can be removed once the container is, and
// nothing is left (no mount, no storage container).
func TestKilledImageVolumeCreates(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	baseline := e.baseline(t)
	pt := t
	for i, step := range []string{"container-rootfs", "container-image-volumes", "container-create"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			e.removed = false
			ref := e.pullVolumeImage(t)
			pcfg := e.podConfig("ivkill" + string(rune('a'+i)))
			if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
				t.Fatal(err)
			}
			resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			if err != nil {
				t.Fatal(err)
			}
			pod := resp.GetPodSandboxId()
			withPod, overlaysBefore := e.held(t), overlayMounts(t, e.d.Dir)
			req := volumeRequest(pod, pcfg, "main", ref, "etc")
			e.killedAt(t, pt, bin, step, func(rt runtimeapi.RuntimeServiceClient) error {
				_, err := rt.CreateContainer(ctx, req)
				return err
			})
			e.img = e.d.Images(t)
			// A restart changes the storage driver's own mounts (a graceful
			// stop unmounts the pause's root filesystem): compare the
			// storage containers and the overlay mounts made since.
			h := e.held(t)
			for _, m := range overlayMounts(t, e.d.Dir) {
				if !slices.Contains(overlaysBefore, m) {
					t.Errorf("overlay mount left by the killed create: %s", m)
				}
			}
			if !strings.Contains(e.d.Log.String(), "removed a container left half-made") {
				t.Errorf("the restarted noded did not undo the killed create:\n%s", e.d.Log)
			}
			if h.StorageContainers != withPod.StorageContainers {
				t.Fatalf("storage containers after the restart: %d; before the create: %d", h.StorageContainers, withPod.StorageContainers)
			}
			created, err := e.rt.CreateContainer(ctx, req)
			if err != nil {
				t.Fatalf("retry: %v\n%s", err, e.d.Log)
			}
			if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); err != nil {
				t.Fatal(err)
			}
			if r, err := e.exec(t, created.GetContainerId(), 10, "cat", volumeMountAt+"/group"); err != nil ||
				!strings.Contains(string(r.GetStdout()), volumeMarker) {
				t.Fatalf("the volume after the retry: %v %q", err, r.GetStdout())
			}
			e.removeAllLeaving(t, baseline)
			if _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
				t.Fatalf("RemoveImage after everything is removed: %v", err)
			}
		})
	}
}

// TestKilledImageVolumeRemovals kills noded right after the steps of a
// RemoveContainer of a container with an image volume, restarts it and
// replays the removal: it succeeds, and neither the volume's mount nor its
// storage container is left, so the image can be removed.
func TestKilledImageVolumeRemovals(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	baseline := e.baseline(t)
	pt := t
	for i, step := range []string{"remove-container-delete", "remove-container-rootfs", "remove-container-image-volumes"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			e.removed = false
			ref := e.pullVolumeImage(t)
			pcfg := e.podConfig("ivrm" + string(rune('a'+i)))
			if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
				t.Fatal(err)
			}
			resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			if err != nil {
				t.Fatal(err)
			}
			pod := resp.GetPodSandboxId()
			withPod, overlaysBefore := e.held(t), overlayMounts(t, e.d.Dir)
			created, err := e.rt.CreateContainer(ctx, volumeRequest(pod, pcfg, "main", ref, ""))
			if err != nil {
				t.Fatal(err)
			}
			ctr := created.GetContainerId()
			if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
				t.Fatal(err)
			}
			e.killedAt(t, pt, bin, step, func(rt runtimeapi.RuntimeServiceClient) error {
				_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
				return err
			})
			e.img = e.d.Images(t)
			if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
				t.Fatalf("retried RemoveContainer: %v\n%s", err, e.d.Log)
			}
			for _, m := range overlayMounts(t, e.d.Dir) {
				if !slices.Contains(overlaysBefore, m) {
					t.Errorf("overlay mount left after the retried removal: %s", m)
				}
			}
			if h := e.held(t); h.StorageContainers != withPod.StorageContainers {
				t.Fatalf("storage containers after the retried removal: %d; before the create: %d", h.StorageContainers, withPod.StorageContainers)
			}
			e.removeAllLeaving(t, baseline)
			if _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
				t.Fatalf("RemoveImage after everything is removed: %v", err)
			}
		})
	}
}

// overlayMounts lists the overlay file systems (root filesystems and
// image volumes) mounted under dir.
func overlayMounts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") && strings.HasSuffix(f[4], "/merged") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestImageVolumeInUserNamespacePod: a pod with its own user namespace
// reads its image volume (not ID-mapped: the image's files show as the
// overflow IDs, as a host path mount's do), and it is read-only there too.
// An ID-mapped image mount is refused.
func TestImageVolumeInUserNamespacePod(t *testing.T) {
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	baseline := e.baseline(t)
	ctx := context.Background()
	ref := e.pullVolumeImage(t)
	pod, pcfg := e.usernsPod(t, "ivuserns")
	vol := &runtimeapi.Mount{ContainerPath: volumeMountAt, Readonly: true, ImageSubPath: "etc",
		Image: &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: volumeImage}}
	ctr := e.startContainer(t, pod, pcfg, "main", usernsContainer([]string{"sleep", "3600"}, vol))
	if got := e.execOut(t, ctr, "cat", volumeMountAt+"/group"); !strings.Contains(got, volumeMarker) {
		t.Fatalf("the image's /etc/group in a user namespace pod: %q", got)
	}
	if r, err := e.exec(t, ctr, 10, "touch", volumeMountAt+"/written"); err != nil || r.GetExitCode() == 0 {
		t.Fatalf("a write to the image volume: %v, exit %d", err, r.GetExitCode())
	}
	// The volume's layers are ID-mapped like the root filesystem's: the
	// image's root-owned files belong to the pod's root, not to nobody.
	if got := strings.TrimSpace(e.execOut(t, ctr, "stat", "-c", "%u:%g", volumeMountAt+"/group")); got != "0:0" {
		t.Errorf("owner of the image's /etc/group in a user namespace pod: %s, want 0:0", got)
	}
	mapped := usernsContainer([]string{"sleep", "3600"}, &runtimeapi.Mount{ContainerPath: volumeMountAt, Readonly: true,
		Image: vol.GetImage(), UidMappings: usernsMapping(usernsHost), GidMappings: usernsMapping(usernsHost)})
	mapped.Metadata = &runtimeapi.ContainerMetadata{Name: "mapped"}
	mapped.Image = &runtimeapi.ImageSpec{Image: busyboxImage}
	if _, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: mapped}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an ID-mapped image volume: %v; want InvalidArgument", err)
	}
	e.removeAllLeaving(t, baseline)
}
