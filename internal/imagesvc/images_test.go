package imagesvc

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc/regtest"
	"github.com/noded-dev/noded/internal/storage"
)

// The same image under two names, pulled at once: one commit, each blob
// fetched once, each name's manifest once, one image with both tags.
func TestSameImageTwoNames(t *testing.T) {
	e := newEnv(t)
	ls := layers(t, 1, 2)
	img := e.push("one/app:1", "", ls...)
	if err := e.reg.Push("two/app:latest", img); err != nil {
		t.Fatal(err)
	}
	e.reg.AddHook(regtest.Slow(50 * time.Millisecond))
	ctx := context.Background()
	refA, refB := e.reg.Ref("one/app:1"), e.reg.Ref("two/app:latest")
	ids, errs := pullAll(ctx, e.svc, 10, refA, refB)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if ids[i] != imageID(t, img) {
			t.Fatalf("pull %d: %s", i, ids[i])
		}
	}
	cfg, blobs := digests(t, img)
	for _, d := range append(blobs, cfg) {
		if n := e.reg.BlobGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
	for _, repo := range []struct{ repo, tag string }{{"one/app", "1"}, {"two/app", "latest"}} {
		if n := e.reg.ManifestGets(repo.repo, repo.tag); n != 1 {
			t.Errorf("%s manifest fetched %d times, want 1", repo.repo, n)
		}
	}

	list, err := e.svc.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %d images, %v; want 1", len(list), err)
	}
	st := list[0]
	slices.Sort(st.RepoTags)
	if want := []string{refA, refB}; !slices.Equal(st.RepoTags, want) {
		t.Errorf("RepoTags %v, want %v", st.RepoTags, want)
	}
	md, _ := img.Digest()
	for _, repo := range []string{"one/app", "two/app"} {
		if want := e.reg.Ref(repo) + "@" + md.String(); !slices.Contains(st.RepoDigests, want) {
			t.Errorf("RepoDigests %v lack %s", st.RepoDigests, want)
		}
	}
	// Every name finds it.
	for _, ref := range append(append([]string{}, st.RepoTags...), st.RepoDigests...) {
		got, err := e.svc.Status(ctx, ref, false)
		if err != nil || got.ID != ids[0] {
			t.Errorf("Status(%q) = %v, %v", ref, got, err)
		}
		if f, err := e.svc.List(ctx, ref); err != nil || len(f) != 1 {
			t.Errorf("List(filter %q): %d images, %v", ref, len(f), err)
		}
	}
	// Removing one tag keeps the image under the other.
	if err := e.svc.Remove(ctx, refA); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Status(ctx, refA, false); !errdefs.IsNotFound(err) {
		t.Errorf("removed tag still found: %v", err)
	}
	got, err := e.svc.Status(ctx, refB, false)
	if err != nil || !slices.Equal(got.RepoTags, []string{refB}) {
		t.Fatalf("after removing %s: %+v, %v", refA, got, err)
	}
	// Pull the first name again, then remove by ID: both names go.
	if _, err := e.svc.Pull(ctx, refA, Auth{}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, ids[0].String()); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{refA, refB, ids[0].String()} {
		if _, err := e.svc.Status(ctx, ref, false); !errdefs.IsNotFound(err) {
			t.Errorf("Status(%q) after removal by ID: %v", ref, err)
		}
	}
	if list, _ := e.svc.List(ctx, ""); len(list) != 0 {
		t.Errorf("%d images left", len(list))
	}
	// Removing an ID that is not there is not an error (critest
	// Idempotence), and its status is NotFound, not a malformed reference.
	unknown := strings.Repeat("0", 64)
	for _, ref := range []string{unknown, "sha256:" + unknown} {
		if err := e.svc.Remove(ctx, ref); err != nil {
			t.Errorf("Remove(%q): %v", ref, err)
		}
		if _, err := e.svc.Status(ctx, ref, false); !errdefs.IsNotFound(err) {
			t.Errorf("Status(%q): %v", ref, err)
		}
	}
	e.assertNoLeftovers()
}

func TestImageStatusFields(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		user     string
		uid      *int64
		username string
	}{
		{"", nil, ""},
		{"1001", ptr(int64(1001)), ""},
		{"1001:1001", ptr(int64(1001)), ""},
		{"nginx", nil, "nginx"},
		{"nginx:www", nil, "nginx"},
	} {
		t.Run("user="+tc.user, func(t *testing.T) {
			tag := "u:" + strings.NewReplacer(":", "-").Replace(tc.user) + "x"
			img := e.push(tag, tc.user, layers(t, 5)...)
			id, err := e.svc.Pull(ctx, e.reg.Ref(tag), Auth{})
			if err != nil {
				t.Fatal(err)
			}
			st, err := e.svc.Status(ctx, id.String(), true)
			if err != nil {
				t.Fatal(err)
			}
			if (st.UID == nil) != (tc.uid == nil) || (st.UID != nil && *st.UID != *tc.uid) || st.Username != tc.username {
				t.Errorf("uid %v username %q; want %v %q", deref(st.UID), st.Username, deref(tc.uid), tc.username)
			}
			if st.Size == 0 || st.Pinned {
				t.Errorf("size %d pinned %v", st.Size, st.Pinned)
			}
			var info map[string]any
			if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info["imageSpec"] == nil {
				t.Errorf("verbose info %q: %v", st.Info["info"], err)
			}
			li, err := e.svc.Resolve(ctx, e.reg.Ref(tag))
			if err != nil || li.ID != id || li.Name != e.reg.Ref(tag) || li.Config.User != tc.user || len(li.Config.Cmd) != 1 {
				t.Errorf("Resolve = %+v, %v", li, err)
			}
			if li, err := e.svc.Resolve(ctx, string(id)[:12]); err != nil || li.Name != e.reg.Ref(tag) {
				t.Errorf("Resolve by ID prefix = %+v, %v", li, err)
			}
			if err := e.svc.Remove(ctx, id.String()); err != nil {
				t.Fatal(err)
			}
			_ = img
		})
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Import commits an in-memory image (the built-in pause image's path);
// the configured pause image is pinned.
func TestImportPinnedPause(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img, err := regtest.Image(goarch(), "65535:65535", layers(t, 7)...)
	if err != nil {
		t.Fatal(err)
	}
	manifest, blobs := rawImage(t, img)
	id, err := e.svc.Import(ctx, "localhost/noded/pause:builtin", manifest, blobs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Status(ctx, "localhost/noded/pause:builtin", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != id || !st.Pinned || st.UID == nil || *st.UID != 65535 {
		t.Errorf("status %+v", st)
	}
	// Importing again is a no-op.
	if id2, err := e.svc.Import(ctx, "localhost/noded/pause:builtin", manifest, blobs); err != nil || id2 != id {
		t.Fatalf("second import: %s, %v", id2, err)
	}
	if e.fetched() != 2 {
		t.Errorf("%d blobs read, want 2 (config and layer, once)", e.fetched())
	}
}

func rawImage(t testing.TB, img v1.Image) ([]byte, map[digest.Digest][]byte) {
	t.Helper()
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[digest.Digest][]byte{digest.FromBytes(cfg): cfg}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b := readAll(t, rc)
		blobs[digest.Digest(d.String())] = b
	}
	return manifest, blobs
}

// A removal waits while a pull in flight uses the image's layers, and
// neither breaks the other.
func TestRemoveDuringPullOfSharedLayers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := layers(t, 40)
	a := e.push("a:1", "", base...)
	if _, err := e.svc.Pull(ctx, e.reg.Ref("a:1"), Auth{}); err != nil {
		t.Fatal(err)
	}
	b := e.push("b:1", "", append(base[:1:1], layers(t, 41)...)...)
	_, blobsB := digests(t, b)
	started, release := make(chan struct{}), make(chan struct{})
	e.reg.AddHook(regtest.StallBlob(e.reg, blobsB[1], started, release))
	pulled := make(chan error, 1)
	go func() { _, err := e.svc.Pull(ctx, e.reg.Ref("b:1"), Auth{}); pulled <- err }()
	<-started
	removed := make(chan error, 1)
	go func() { removed <- e.svc.Remove(ctx, imageID(t, a).String()) }()
	select {
	case err := <-removed:
		// Allowed only if the shared layer survived it.
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-pulled; err != nil {
		t.Fatalf("pull of b: %v", err)
	}
	select {
	case err := <-removed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removal still waiting after the pull ended")
	}
	if _, err := e.svc.Status(ctx, e.reg.Ref("a:1"), false); !errdefs.IsNotFound(err) {
		t.Errorf("a still there: %v", err)
	}
	ls, _ := e.store.Layers().List()
	if len(ls) != 2 {
		t.Errorf("%d layers, want b's 2", len(ls))
	}
}

func TestFsInfoAndContainers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.push("app:1", "", layers(t, 1, 2)...)
	id, err := e.svc.Pull(ctx, e.reg.Ref("app:1"), Auth{})
	if err != nil {
		t.Fatal(err)
	}
	images, ctrs, err := e.svc.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Two layers of two 64 KiB random files each.
	if images.UsedBytes < 4*64<<10 || images.InodesUsed < 6 || images.Mountpoint != e.store.Root() {
		t.Errorf("image fs %+v", images)
	}
	if ctrs.UsedBytes != 0 || ctrs.InodesUsed != 0 {
		t.Errorf("container fs %+v with no container", ctrs)
	}

	c, err := e.store.Containers().CreateContainer("", id, storage.CreateContainerOptions{Names: []string{"c1"}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := e.store.Containers().Mount(c.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "db")); err != nil {
		t.Errorf("the image's content is not in the container's rootfs: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "written"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	images2, ctrs2, err := e.svc.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ctrs2.UsedBytes < 1<<20 || ctrs2.InodesUsed < 2 {
		t.Errorf("container fs %+v after writing 1 MiB", ctrs2)
	}
	if images2.UsedBytes > images.UsedBytes+64<<10 {
		t.Errorf("image fs grew from %d to %d with a container write", images.UsedBytes, images2.UsedBytes)
	}
	// An image in use cannot be removed.
	if err := e.svc.Remove(ctx, id.String()); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("removing an image in use: %v", err)
	}
	if err := e.store.Containers().Unmount(c.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Containers().DeleteContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, id.String()); err != nil {
		t.Fatal(err)
	}
	_ = img
	e.assertNoLeftovers()
}
