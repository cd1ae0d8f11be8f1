package imagesvc

import (
	"context"
	"testing"
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
