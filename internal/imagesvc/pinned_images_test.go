package imagesvc

import (
	"context"
	"testing"
	"time"
)

// Images the pinned-images patterns name are reported pinned by Status and
// List, others not; a pinned image is still removed when asked (the CRI:
// pinning is a recommendation to the kubelet's garbage collection).
func TestPinnedImages(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PinnedImages = []string{"*/pinned/*"} })
	ctx := context.Background()
	e.push("pinned/app:1", "", layers(t, 21)...)
	e.push("other/app:1", "", layers(t, 22)...)
	pinnedID, err := e.svc.Pull(ctx, e.reg.Ref("pinned/app:1"), Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pull(ctx, e.reg.Ref("other/app:1"), Auth{}); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]bool{e.reg.Ref("pinned/app:1"): true, e.reg.Ref("other/app:1"): false} {
		st, err := e.svc.Status(ctx, ref, false)
		if err != nil || st.Pinned != want {
			t.Errorf("Status(%s) pinned (%+v, %v), want %v", ref, st, err, want)
		}
	}
	list, err := e.svc.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range list {
		if want := img.ID == pinnedID; img.Pinned != want {
			t.Errorf("List: %s pinned %v, want %v", img.ID, img.Pinned, want)
		}
	}
	if err := e.svc.Remove(ctx, pinnedID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Status(ctx, pinnedID.String(), false); err == nil {
		t.Error("the pinned image is still there after RemoveImage")
	}
}

// A reload swaps the pinned names at once; an invalid pattern or pause
// image is refused and changes nothing.
func TestReconfigurePinned(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PinnedImages = []string{"*/first/*"} })
	ctx := context.Background()
	e.push("first/app:1", "", layers(t, 31)...)
	e.push("second/app:1", "", layers(t, 32)...)
	for _, r := range []string{"first/app:1", "second/app:1"} {
		if _, err := e.svc.Pull(ctx, e.reg.Ref(r), Auth{}); err != nil {
			t.Fatal(err)
		}
	}
	pinnedNow := func() map[string]bool {
		out := map[string]bool{}
		for _, r := range []string{"first/app:1", "second/app:1"} {
			st, err := e.svc.Status(ctx, e.reg.Ref(r), false)
			if err != nil {
				t.Fatal(err)
			}
			out[r] = st.Pinned
		}
		return out
	}
	steps := []struct {
		name    string
		set     Settings
		wantErr bool
		want    map[string]bool
	}{
		{"initial", Settings{PinnedImages: []string{"*/first/*"}}, false, map[string]bool{"first/app:1": true, "second/app:1": false}},
		{"swapped", Settings{PinnedImages: []string{"*/second/*"}}, false, map[string]bool{"first/app:1": false, "second/app:1": true}},
		{"pause image pins", Settings{PauseImage: e.reg.Ref("first/app:1")}, false, map[string]bool{"first/app:1": true, "second/app:1": false}},
		{"bad pattern refused", Settings{PinnedImages: []string{"a*b*"}}, true, map[string]bool{"first/app:1": true, "second/app:1": false}},
		{"bad pause image refused", Settings{PauseImage: "UPPER/case"}, true, map[string]bool{"first/app:1": true, "second/app:1": false}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := e.svc.Reconfigure(st.set)
			if (err != nil) != st.wantErr {
				t.Fatalf("Reconfigure(%+v) = %v, want error %v", st.set, err, st.wantErr)
			}
			if got := pinnedNow(); got["first/app:1"] != st.want["first/app:1"] || got["second/app:1"] != st.want["second/app:1"] {
				t.Errorf("pinned %v, want %v", got, st.want)
			}
		})
	}
}

// A reload's pull settings reach the puller, the fetcher and the slots.
func TestReconfigurePullSettings(t *testing.T) {
	e := newEnv(t)
	if err := e.svc.Reconfigure(Settings{ProgressTimeout: 45 * time.Second, MaxParallelDownloads: 7}); err != nil {
		t.Fatal(err)
	}
	f := e.svc.commit.blobs
	if p, b := time.Duration(e.svc.puller.progressTimeout.Load()), time.Duration(f.progressTimeout.Load()); p != 45*time.Second || b != 45*time.Second {
		t.Errorf("progress timeouts %v (manifests) and %v (blobs), want 45s", p, b)
	}
	f.download.mu.Lock()
	size := f.download.size
	f.download.mu.Unlock()
	if size != 7 {
		t.Errorf("download slots %d, want 7", size)
	}
}
