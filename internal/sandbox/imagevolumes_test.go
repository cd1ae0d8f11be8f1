package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/storage"
)

// volumeFakes adds to the fake storage what image volumes need: names,
// the listing of storage containers (the start-up sweep) and, in every
// mounted file system, a small image tree with symbolic links.
type volumeFakes struct {
	*fakes
	mu    sync.Mutex
	names map[storage.ContainerID][]string
}

func (v *volumeFakes) CreateContainer(id storage.ContainerID, img storage.ImageID, o storage.CreateContainerOptions) (*storage.Container, error) {
	c, err := v.fakes.CreateContainer(id, img, o)
	v.mu.Lock()
	v.names[id] = o.Names
	v.mu.Unlock()
	return c, err
}

func (v *volumeFakes) Mount(id storage.ContainerID, label string) (string, error) {
	p, err := v.fakes.Mount(id, label)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(p, "etc"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(p, "etc", "group"), []byte("root:x:0:\n"), 0o644); err != nil {
		return "", err
	}
	for link, target := range map[string]string{"abs": "/etc", "up": "../../../..", "dangling": "/nowhere"} {
		if err := os.Symlink(target, filepath.Join(p, link)); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	return p, nil
}

func (v *volumeFakes) List() ([]storage.Container, error) {
	v.fakes.mu.Lock()
	defer v.fakes.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []storage.Container
	for id := range v.rootfs {
		out = append(out, storage.Container{ID: id, Names: v.names[id]})
	}
	return out, nil
}

// newVolumeService is newTestService on volumeFakes.
func newVolumeService(t *testing.T, failAfter failHook) (*Services, *volumeFakes) {
	t.Helper()
	s, f := newTestService(t, failAfter)
	v := &volumeFakes{fakes: f, names: map[storage.ContainerID][]string{}}
	s.Containers.o.Rootfs = v // the services share one base
	return s, v
}

func volumeConfig(name, subPath string) *runtimeapi.ContainerConfig {
	c := containerConfig(name)
	c.Mounts = []*runtimeapi.Mount{{
		ContainerPath: "/vol", Readonly: true, ImageSubPath: subPath,
		Image: &runtimeapi.ImageSpec{Image: "tools", UserSpecifiedImage: "example.com/tools:1"},
	}}
	return c
}

// readySandbox runs a pod for containers.
func readySandbox(t *testing.T, s *Services) ids.SandboxID {
	t.Helper()
	pod, err := s.Pods.RunPodSandbox(context.Background(), podConfig("p"), "")
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func specMount(t *testing.T, bundle, dst string) specs.Mount {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Mounts {
		if m.Destination == dst {
			return m
		}
	}
	t.Fatalf("no mount at %s in %v", dst, spec.Mounts)
	return specs.Mount{}
}

// An image volume is a storage container of its own, mounted read-only,
// bound (its sub path) into the container, reported with the image's ID,
// unmounted when the pod stops and removed with the container.
func TestImageVolumeLifecycle(t *testing.T) {
	s, f := newVolumeService(t, nil)
	ctx := context.Background()
	pod := readySandbox(t, s)
	ctr, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", "etc"))
	if err != nil {
		t.Fatal(err)
	}
	vol := imageVolumeID(ctr, 0)
	if held := f.held(); !slices.Contains(held, "rootfs "+string(vol)) || !slices.Contains(held, "mounted "+string(vol)) {
		t.Fatalf("volume %s not made and mounted: %v", vol, held)
	}
	if got := f.names[vol]; !slices.Equal(got, []string{imageVolumeName(ctr, 0)}) {
		t.Errorf("volume names %v", got)
	}
	rec, err := s.Containers.o.Store.Container(ctr)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.ImageVolumes) != 1 || rec.ImageVolumes[0].ImageID != "sha256:aaaa" || rec.ImageVolumes[0].StorageID != vol {
		t.Fatalf("recorded volumes %+v", rec.ImageVolumes)
	}

	m := specMount(t, rec.Bundle, "/vol")
	if want := filepath.Join(f.dir, "rootfs", string(vol), "etc"); m.Source != want || m.Type != "bind" {
		t.Errorf("mount %+v, want a bind of %s", m, want)
	}
	for _, o := range []string{"ro", "nosuid", "nodev", "rprivate"} {
		if !slices.Contains(m.Options, o) {
			t.Errorf("mount options %v lack %s", m.Options, o)
		}
	}
	if slices.Contains(m.Options, "noexec") {
		t.Errorf("mount options %v: noexec was not asked for", m.Options)
	}

	st, _, err := s.Containers.ContainerStatus(ctr, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetMounts()) != 1 || st.GetMounts()[0].GetImage().GetImageRef() != "sha256:aaaa" ||
		st.GetMounts()[0].GetImage().GetImage() != "tools" || st.GetMounts()[0].GetImageSubPath() != "etc" {
		t.Fatalf("status mounts %v", st.GetMounts())
	}
	if rec.Config.GetMounts()[0].GetImage().GetImageRef() != "" {
		t.Error("the status changed the recorded request")
	}

	if err := s.Pods.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if held := f.held(); slices.Contains(held, "mounted "+string(vol)) || !slices.Contains(held, "rootfs "+string(vol)) {
		t.Fatalf("a stopped pod's volume is unmounted and kept: %v", held)
	}
	if err := s.Containers.RemoveContainer(ctx, ctr); err != nil {
		t.Fatal(err)
	}
	if held := f.held(); slices.ContainsFunc(held, func(h string) bool { return strings.HasSuffix(h, string(vol)) }) {
		t.Fatalf("volume left after RemoveContainer: %v", held)
	}
}

// Bad image mounts fail the create with their class, leaving nothing: no
// storage container, mount, record or pending record, and the name free.
func TestImageVolumeBadRequests(t *testing.T) {
	edit := func(f func(m *runtimeapi.Mount)) *runtimeapi.ContainerConfig {
		c := volumeConfig("c", "")
		f(c.Mounts[0])
		return c
	}
	for _, tc := range []struct {
		desc string
		cfg  *runtimeapi.ContainerConfig
		want error
		msg  string
	}{
		{"image not pulled", edit(func(m *runtimeapi.Mount) { m.Image.Image = "missing" }), errdefs.ErrNotFound, `image volume at "/vol"`},
		{"sub path missing in the image", volumeConfig("c", "not-there"), errdefs.ErrNotFound, `sub path "not-there" does not exist`},
		{"sub path under a file", volumeConfig("c", "etc/group/x"), errdefs.ErrNotFound, "does not exist"},
		{"sub path to a dangling link", volumeConfig("c", "dangling"), errdefs.ErrNotFound, "does not exist"},
		{"sub path ..", volumeConfig("c", ".."), errdefs.ErrInvalidArgument, `".." component`},
		{"sub path leaving through ..", volumeConfig("c", "etc/../../x"), errdefs.ErrInvalidArgument, `".." component`},
		{"absolute sub path", volumeConfig("c", "/etc"), errdefs.ErrInvalidArgument, "not a relative path"},
		{"not read-only", edit(func(m *runtimeapi.Mount) { m.Readonly = false }), errdefs.ErrInvalidArgument, "must be read-only"},
		{"host path and image", edit(func(m *runtimeapi.Mount) { m.HostPath = "/srv" }), errdefs.ErrInvalidArgument, "mutually exclusive"},
		{"no image name", edit(func(m *runtimeapi.Mount) { m.Image.Image = "" }), errdefs.ErrInvalidArgument, "names no image"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, f := newVolumeService(t, nil)
			ctx := context.Background()
			pod := readySandbox(t, s)
			before := f.held()
			_, err := s.Containers.CreateContainer(ctx, pod, tc.cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.msg)
			}
			if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
				t.Fatalf("left behind: %v (before: %v)", held, before)
			}
			st := s.Containers.o.Store
			if n := len(s.Containers.ListContainers(nil)) + len(st.PendingContainers()); n != 0 {
				t.Fatalf("%d records left", n)
			}
			if _, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", "etc")); err != nil {
				t.Fatalf("a good request under the same name: %v", err)
			}
		})
	}
}

// A failure, or a kill, right after any step of a create with an image
// volume leaves nothing behind (rollback, or recovery at restart), and the
// retry succeeds.
func TestImageVolumeRollbackAndRecovery(t *testing.T) {
	for _, step := range []string{"container-pending", "container-rootfs", "container-image-volumes", "container-create"} {
		for _, kill := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/kill=%v", step, kill), func(t *testing.T) {
				armed := false
				s, f := newVolumeService(t, func(at string) error {
					if armed && at == step {
						if kill {
							panic(killed{at})
						}
						return fmt.Errorf("injected failure after %s", at)
					}
					return nil
				})
				ctx := context.Background()
				pod := readySandbox(t, s)
				before := f.held()
				armed = true
				func() {
					defer func() {
						if r := recover(); r != nil {
							if _, ok := r.(killed); !ok {
								panic(r)
							}
						}
					}()
					if _, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", "etc")); err == nil {
						t.Fatal("CreateContainer succeeded despite the failure")
					}
				}()
				armed = false
				if kill {
					if !slices.ContainsFunc(f.held(), func(h string) bool { return strings.HasPrefix(h, "mounted ") && !slices.Contains(before, h) }) && step != "container-pending" {
						t.Fatalf("the kill left nothing to recover: %v", f.held())
					}
					s = restartOnDisk(t, s)
				}
				if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
					t.Fatalf("left behind: %v (before: %v)", held, before)
				}
				if n := len(s.Containers.o.Store.PendingContainers()); n != 0 {
					t.Fatalf("%d pending records left", n)
				}
				if _, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", "etc")); err != nil {
					t.Fatalf("retry: %v", err)
				}
			})
		}
	}
}

// A RemoveContainer that fails after any of its steps is finished by the
// retry, which removes the volume.
func TestImageVolumeRemoveRetried(t *testing.T) {
	for _, step := range []string{"remove-container-delete", "remove-container-rootfs", "remove-container-image-volumes", "remove-container-bundle"} {
		t.Run(step, func(t *testing.T) {
			armed := false
			s, f := newVolumeService(t, func(at string) error {
				if armed && at == step {
					armed = false
					return fmt.Errorf("injected failure after %s", at)
				}
				return nil
			})
			ctx := context.Background()
			pod := readySandbox(t, s)
			before := f.held()
			ctr, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", ""))
			if err != nil {
				t.Fatal(err)
			}
			armed = true
			if err := s.Containers.RemoveContainer(ctx, ctr); err == nil {
				t.Fatal("RemoveContainer succeeded despite the failure")
			}
			if err := s.Containers.RemoveContainer(ctx, ctr); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
				t.Fatalf("left behind: %v (before: %v)", held, before)
			}
		})
	}
}

// At start-up, an image volume whose container has no record (whatever
// left it) is removed; those of recorded containers stay.
func TestImageVolumeSweep(t *testing.T) {
	s, f := newVolumeService(t, nil)
	ctx := context.Background()
	pod := readySandbox(t, s)
	ctr, err := s.Containers.CreateContainer(ctx, pod, volumeConfig("c", ""))
	if err != nil {
		t.Fatal(err)
	}
	orphan := ids.ContainerID(strings.Repeat("ab", 32))
	for i := range 2 {
		id := imageVolumeID(orphan, i)
		if _, err := f.CreateContainer(id, "aaaa", storage.CreateContainerOptions{Names: []string{imageVolumeName(orphan, i)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Mount(id, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Not image volumes: a name of the form with another ID, and a root
	// filesystem.
	if _, err := f.CreateContainer("other", "aaaa", storage.CreateContainerOptions{Names: []string{imageVolumeName(orphan, 7)}}); err != nil {
		t.Fatal(err)
	}
	s = restartOnDisk(t, s)
	var vols []string
	for _, h := range f.held() {
		if strings.HasPrefix(h, "rootfs ") {
			vols = append(vols, strings.TrimPrefix(h, "rootfs "))
		}
	}
	want := []string{string(pod), string(ctr), string(imageVolumeID(ctr, 0)), "other"}
	sort.Strings(want)
	if !slices.Equal(vols, want) {
		t.Fatalf("storage containers after the sweep: %v, want %v", vols, want)
	}
	if _, _, err := s.Containers.ContainerStatus(ctr, false); err != nil {
		t.Fatal(err)
	}
}

func TestImageVolumeOwner(t *testing.T) {
	ctr := ids.ContainerID(strings.Repeat("cd", 32))
	for _, tc := range []struct {
		desc  string
		c     storage.Container
		owner ids.ContainerID
	}{
		{"volume", storage.Container{ID: imageVolumeID(ctr, 3), Names: []string{imageVolumeName(ctr, 3)}}, ctr},
		{"name of another index", storage.Container{ID: imageVolumeID(ctr, 3), Names: []string{imageVolumeName(ctr, 2)}}, ""},
		{"root filesystem", storage.Container{ID: ctr, Names: []string{"c_p_ns_uid_0"}}, ""},
		{"CRI name that looks like one", storage.Container{ID: ctr, Names: []string{string(ctr) + "-image-volume-0_p_ns_uid_0"}}, ""},
		{"no names", storage.Container{ID: imageVolumeID(ctr, 0)}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			owner, ok := imageVolumeOwner(tc.c)
			if owner != tc.owner || ok != (tc.owner != "") {
				t.Fatalf("imageVolumeOwner = %q, %v; want %q", owner, ok, tc.owner)
			}
		})
	}
}
