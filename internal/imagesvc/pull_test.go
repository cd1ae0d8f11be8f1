package imagesvc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc/regtest"
	"github.com/noded-dev/noded/internal/storage"
)

// pullAll runs n pulls of refs[i%len(refs)] at once and returns the IDs
// and errors.
func pullAll(ctx context.Context, svc *Service, n int, refs ...string) ([]storage.ImageID, []error) {
	ids := make([]storage.ImageID, n)
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			ids[i], errs[i] = svc.Pull(ctx, refs[i%len(refs)], Auth{})
		}()
	}
	start.Done()
	wg.Wait()
	return ids, errs
}

func TestPullSameImageConcurrently(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1, 2, 3)...)
	e.reg.AddHook(regtest.Slow(50 * time.Millisecond)) // make sure the pulls overlap
	ids, errs := pullAll(context.Background(), e.svc, 20, e.reg.Ref("app:1"))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if ids[i] != imageID(t, img) {
			t.Fatalf("pull %d returned %s, want %s", i, ids[i], imageID(t, img))
		}
	}
	cfg, blobs := digests(t, img)
	for _, d := range append(blobs, cfg) {
		if n := e.reg.BlobGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
	if n := e.reg.ManifestGets("app", "1"); n != 1 {
		t.Errorf("manifest fetched %d times, want 1", n)
	}
	if n := e.unpacked(); n != 3 {
		t.Errorf("%d layers unpacked, want 3", n)
	}
	list, err := e.svc.List(context.Background(), "")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want one image", list, err)
	}
	if got := list[0].ID.String(); !strings.HasPrefix(got, "sha256:") || got != ids[0].String() {
		t.Errorf("Image.Id %q, PullImage returned %q", got, ids[0].String())
	}
}

func TestPullImagesSharingLayers(t *testing.T) {
	e := newEnv(t)
	base := layers(t, 10, 11, 12)
	a := e.push("a:1", "", append(base[:3:3], layers(t, 20, 21)...)...)
	b := e.push("b:1", "", append(base[:3:3], layers(t, 30, 31)...)...)
	e.reg.AddHook(regtest.Slow(50 * time.Millisecond))
	ids, errs := pullAll(context.Background(), e.svc, 10, e.reg.Ref("a:1"), e.reg.Ref("b:1"))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	if ids[0] != imageID(t, a) || ids[1] != imageID(t, b) {
		t.Fatalf("IDs %s, %s", ids[0], ids[1])
	}
	cfgA, blobsA := digests(t, a)
	cfgB, blobsB := digests(t, b)
	for _, d := range append(append(blobsA, blobsB...), cfgA, cfgB) {
		if n := e.reg.BlobGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
	if n := e.unpacked(); n != 7 {
		t.Errorf("%d layers unpacked, want 7 (3 shared + 2 + 2)", n)
	}
	ls, _ := e.store.Layers().List()
	if len(ls) != 7 {
		t.Errorf("%d layers in storage, want 7", len(ls))
	}
}

// A waiter that gives up does not fail the others; the download goes on.
func TestCancelledLeader(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1, 2)...)
	_, blobs := digests(t, img)
	started, release := make(chan struct{}), make(chan struct{})
	e.reg.AddHook(regtest.StallBlob(e.reg, blobs[1], started, release))

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := e.svc.Pull(leaderCtx, e.reg.Ref("app:1"), Auth{})
		leaderErr <- err
	}()
	<-started
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{})
		}()
	}
	// The followers have joined once every PullImage call is waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	regtest.WaitFor(ctx, func() bool { return int(gauge(e.svc.metrics.inFlight)) == 6 })
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("follower %d: %v", i, err)
		}
	}
	if n := e.reg.BlobGets(blobs[1]); n != 1 {
		t.Errorf("stalled blob fetched %d times, want 1", n)
	}
	if n := e.reg.ManifestGets("app", "1"); n != 1 {
		t.Errorf("manifest fetched %d times, want 1", n)
	}
}

// A pull whose every caller left still completes: the kubelet's retry
// finds the image.
func TestPullCompletesWithoutWaiters(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1)...)
	_, blobs := digests(t, img)
	started, release := make(chan struct{}), make(chan struct{})
	e.reg.AddHook(regtest.StallBlob(e.reg, blobs[0], started, release))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := e.svc.Pull(ctx, e.reg.Ref("app:1"), Auth{}); done <- err }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	close(release)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if !regtest.WaitFor(wctx, func() bool { _, err := e.svc.Status(wctx, e.reg.Ref("app:1"), false); return err == nil }) {
		t.Fatal("the abandoned pull did not complete")
	}
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.BlobGets(blobs[0]); n != 1 {
		t.Errorf("blob fetched %d times, want 1", n)
	}
}

func TestCorruptBlob(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1, 2, 3)...)
	_, blobs := digests(t, img)
	e.reg.AddHook(regtest.CorruptBlob(e.reg, blobs[2]))
	_, errs := pullAll(context.Background(), e.svc, 5, e.reg.Ref("app:1"))
	for i, err := range errs {
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), blobs[2]) || !strings.Contains(err.Error(), e.reg.Host) {
			t.Errorf("pull %d: %v; want a failed precondition naming the blob and the registry", i, err)
		}
	}
	list, _ := e.svc.List(context.Background(), "")
	if len(list) != 0 {
		t.Errorf("a failed pull left %d images listed", len(list))
	}
	e.assertNoLeftovers()

	e.reg.ClearHooks()
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}); err != nil {
		t.Fatalf("pull from a good registry after a corrupt one: %v", err)
	}
}

// A layer whose uncompressed content does not match the config's DiffID
// is not committed.
func TestDiffIDMismatch(t *testing.T) {
	e := newEnv(t)
	good := layers(t, 1, 2)
	img := e.push("good:1", "", good...)
	// An image whose manifest and blobs are consistent but whose config
	// lists the DiffID of another layer.
	cfg, _ := img.ConfigFile()
	other := layers(t, 9)[0]
	otherDiff, _ := other.DiffID()
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[1] = otherDiff
	bad, err := mutateConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Push("bad:1", bad); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Pull(context.Background(), e.reg.Ref("bad:1"), Auth{})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "DiffID") {
		t.Fatalf("pull: %v; want a DiffID mismatch", err)
	}
	e.assertNoLeftovers()
}

func TestTransientErrorsAreRetried(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1)...)
	_, blobs := digests(t, img)
	e.reg.AddHook(regtest.FailGETs("manifest", "1", 1, http.StatusInternalServerError))
	e.reg.AddHook(regtest.FailGETs("blob", blobs[0], 1, http.StatusBadGateway))
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}); err != nil {
		t.Fatalf("pull after one 500 and one 502: %v", err)
	}
	if n := e.reg.ManifestGets("app", "1"); n != 2 {
		t.Errorf("manifest fetched %d times, want 2 (one 500, one success)", n)
	}
	if n := e.reg.BlobGets(blobs[0]); n != 2 {
		t.Errorf("blob fetched %d times, want 2", n)
	}
}

// A download cut off midway is retried; the retry skips what was
// already written (and perhaps already unpacked).
func TestBrokenDownloadResumes(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1, 2)...)
	_, blobs := digests(t, img)
	e.reg.AddHook(regtest.BreakBlob(e.reg, blobs[0], 1))
	id, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if id != imageID(t, img) {
		t.Fatalf("got %s", id)
	}
	// containers/image first tries to resume with a Range request, which
	// this registry refuses; then noded retries and skips the prefix.
	if n := e.reg.BlobGets(blobs[0]); n < 2 || n > 3 {
		t.Errorf("broken blob fetched %d times, want 2 or 3", n)
	}
	ls, _ := e.store.Layers().List()
	if len(ls) != 2 {
		t.Errorf("%d layers", len(ls))
	}
}

func TestRegistryErrors(t *testing.T) {
	e := newEnv(t)
	e.push("app:1", "", layers(t, 1)...)
	for _, tc := range []struct {
		name  string
		hook  regtest.Hook
		ref   string
		class error
		want  []string
	}{
		{"persistent 503", regtest.FailGETs("manifest", "", 100, http.StatusServiceUnavailable), "app:1", errdefs.ErrUnavailable, []string{"503"}},
		{"401 without credentials", regtest.RequireBasicAuth("u", "p"), "app:1", errdefs.ErrUnauthenticated, []string{"401"}},
		{"403", regtest.FailGETs("manifest", "", 100, http.StatusForbidden), "app:1", errdefs.ErrPermissionDenied, []string{"403"}},
		{"unknown tag", nil, "app:nope", errdefs.ErrNotFound, []string{"404"}},
		{"unknown repository", nil, "nope:1", errdefs.ErrNotFound, []string{"404"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.reg.ClearHooks()
			if tc.hook != nil {
				e.reg.AddHook(tc.hook)
			}
			_, err := e.svc.Pull(context.Background(), e.reg.Ref(tc.ref), Auth{})
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v (%T), want class %v", err, err, tc.class)
			}
			for _, w := range append(tc.want, e.reg.Host) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
		})
	}
	e.reg.ClearHooks()
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}); err != nil {
		t.Fatalf("pull once the registry recovered: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t)
	e.push("app:1", "", layers(t, 1)...)
	for _, tc := range []struct {
		name string
		hook regtest.Hook
		auth Auth
	}{
		{"username and password", regtest.RequireBasicAuth("user", "secret"), Auth{Username: "user", Password: "secret"}},
		{"auth field", regtest.RequireBasicAuth("user", "secret"), Auth{Auth: "dXNlcjpzZWNyZXQ="}},
		{"registry token", regtest.RequireBearer("tok3n"), Auth{RegistryToken: "tok3n"}},
		{"identity token", regtest.RequireOAuthRefresh(e.reg.Host, "refresh-me", "acc3ss"), Auth{IdentityToken: "refresh-me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.reg.ClearHooks()
			e.reg.AddHook(tc.hook)
			if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), tc.auth); err != nil {
				t.Fatal(err)
			}
			if err := e.svc.Remove(context.Background(), e.reg.Ref("app:1")); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		e.reg.ClearHooks()
		e.reg.AddHook(regtest.RequireBasicAuth("user", "secret"))
		_, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{Username: "user", Password: "wrong"})
		if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), e.reg.Host) {
			t.Fatalf("error %v, want Unauthenticated naming the registry", err)
		}
	})
	t.Run("wrong identity token", func(t *testing.T) {
		e.reg.ClearHooks()
		e.reg.AddHook(regtest.RequireOAuthRefresh(e.reg.Host, "refresh-me", "acc3ss"))
		if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{IdentityToken: "stale"}); err == nil {
			t.Fatal("pull with a refused identity token succeeded")
		}
	})
	t.Run("malformed auth", func(t *testing.T) {
		_, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{Auth: "!!"})
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("error %v, want InvalidArgument", err)
		}
	})
}

func TestProgressTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ProgressTimeout = 300 * time.Millisecond })
	img := e.push("app:1", "", layers(t, 1)...)
	_, blobs := digests(t, img)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	e.reg.AddHook(regtest.StallBlob(e.reg, blobs[0], started, release))
	start := time.Now()
	_, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{})
	if !errors.Is(err, errdefs.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "progress") {
		t.Fatalf("error %v, want DeadlineExceeded about progress", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to notice", d)
	}
	e.assertNoLeftovers()
}

func TestInvalidReferences(t *testing.T) {
	e := newEnv(t)
	for _, ref := range []string{"", "UPPER/case", "docker://busybox", "a b", "busybox:bad tag", "x@sha256:123"} {
		if _, err := e.svc.Pull(context.Background(), ref, Auth{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Pull(%q): %v, want InvalidArgument", ref, err)
		}
	}
}

func TestManifestListPicksThisPlatform(t *testing.T) {
	e := newEnv(t)
	mine, err := regtest.Image(goarch(), "", layers(t, 1)...)
	if err != nil {
		t.Fatal(err)
	}
	other, err := regtest.Image(otherArch(), "", layers(t, 2)...)
	if err != nil {
		t.Fatal(err)
	}
	idx := regtest.Index(map[string]v1Image{goarch(): mine, otherArch(): other})
	if err := e.reg.PushIndex("multi:1", idx); err != nil {
		t.Fatal(err)
	}
	id, err := e.svc.Pull(context.Background(), e.reg.Ref("multi:1"), Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if id != imageID(t, mine) {
		t.Fatalf("pulled %s, want this platform's %s", id, imageID(t, mine))
	}
	idxDigest, _ := idx.Digest()
	st, err := e.svc.Status(context.Background(), id.String(), false)
	if err != nil {
		t.Fatal(err)
	}
	want := e.reg.Ref("multi") + "@" + idxDigest.String()
	if len(st.RepoDigests) != 1 || st.RepoDigests[0] != want {
		t.Errorf("RepoDigests %v, want [%s] (the list's digest)", st.RepoDigests, want)
	}
	// Pull by the list's digest finds it without a new image.
	id2, err := e.svc.Pull(context.Background(), want, Auth{})
	if err != nil || id2 != id {
		t.Fatalf("pull by digest: %s, %v", id2, err)
	}
	_, blobs := digests(t, other)
	if n := e.reg.BlobGets(blobs[0]); n != 0 {
		t.Errorf("the other platform's layer was fetched %d times", n)
	}
}

func TestShortNameUsesSearchRegistries(t *testing.T) {
	e := newEnv(t)
	img := e.push("library/tool:2", "", layers(t, 1)...)
	id, err := e.svc.Pull(context.Background(), "library/tool:2", Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if id != imageID(t, img) {
		t.Fatalf("got %s", id)
	}
	for _, ref := range []string{"library/tool:2", e.reg.Ref("library/tool:2"), id.String(), string(id), string(id)[:12]} {
		if _, err := e.svc.Status(context.Background(), ref, false); err != nil {
			t.Errorf("Status(%q): %v", ref, err)
		}
	}
}

func TestUnknownImageStatus(t *testing.T) {
	e := newEnv(t)
	for _, ref := range []string{"nothing:here", "sha256:" + strings.Repeat("a", 64), fmt.Sprintf("%s/x@sha256:%s", e.reg.Host, strings.Repeat("b", 64))} {
		if _, err := e.svc.Status(context.Background(), ref, false); !errdefs.IsNotFound(err) {
			t.Errorf("Status(%q): %v, want NotFound", ref, err)
		}
		if err := e.svc.Remove(context.Background(), ref); err != nil {
			t.Errorf("Remove(%q) of an absent image: %v", ref, err)
		}
	}
}

// registries.conf mirrors: the image is pulled from the mirror; the
// credentials of the request are not sent there.
func TestMirror(t *testing.T) {
	e := newEnv(t)
	img := e.push("lib/app:1", "", layers(t, 1)...)
	// The primary location refuses connections; only the mirror works.
	// Written after the service has read the file: it applies anyway.
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("lib/app:1"), Auth{}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(context.Background(), e.reg.Ref("lib/app:1")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	conf := fmt.Sprintf("[[registry]]\nlocation = \"localhost:1\"\ninsecure = true\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", e.reg.Host)
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := e.svc.Pull(context.Background(), "localhost:1/lib/app:1", Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if id != imageID(t, img) {
		t.Fatalf("got %s", id)
	}
	st, err := e.svc.Status(context.Background(), "localhost:1/lib/app:1", false)
	if err != nil || st.RepoTags[0] != "localhost:1/lib/app:1" {
		t.Fatalf("status %+v, %v: the image is named as requested, not after the mirror", st, err)
	}
}

func TestPullByDigest(t *testing.T) {
	e := newEnv(t)
	img := e.push("app:1", "", layers(t, 1)...)
	md, _ := img.Digest()
	ref := e.reg.Ref("app") + "@" + md.String()
	id, err := e.svc.Pull(context.Background(), ref, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Status(context.Background(), ref, false)
	if err != nil || st.ID != id || len(st.RepoTags) != 0 || len(st.RepoDigests) != 1 || st.RepoDigests[0] != ref {
		t.Fatalf("status %+v, %v", st, err)
	}
	// Again: the name pins the content, no registry round trip.
	e.reg.Reset()
	if _, err := e.svc.Pull(context.Background(), ref, Auth{}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.reg.Gets()); n != 0 {
		t.Errorf("second pull by digest made %d registry GETs", n)
	}
	if err := e.svc.Remove(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	e.assertNoLeftovers()
}
