package imagesvc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc/regtest"
)

// TestRegistryFaults pulls through a registry that fails the ways real
// ones do: server errors, connections reset by a proxy (mid-manifest,
// mid-blob), a short copy of a blob, a registry that never answers. A
// fault that lasts fails the pull with the class the kubelet acts on
// (Unavailable: try again later; FailedPrecondition: the content is bad;
// DeadlineExceeded: the pull progress timeout) and a message naming the
// registry, and leaves no layer, image or temporary blob behind; a single
// transient fault is retried and the pull succeeds. Either way a later
// pull without faults succeeds. (Corrupt blobs and DiffID mismatches:
// TestCorruptBlob, TestDiffIDMismatch; stalled blobs: TestProgressTimeout.)
func TestRegistryFaults(t *testing.T) {
	type blobs struct{ config, bottom, top string }
	tests := []struct {
		name  string
		fault func(reg *regtest.Registry, b blobs) regtest.Hook
		class error  // nil: the pull succeeds
		want  string // in the message, besides the registry
		// retried is the GET the fault hit, which must have been made
		// more than once.
		retried func(reg *regtest.Registry, b blobs) int
		// progressTimeout, if set, replaces a minute: longer than
		// containers/image's one-second pause before it reconnects.
		progressTimeout time.Duration
	}{
		{name: "503 on every layer GET", class: errdefs.ErrUnavailable, want: "503",
			fault: func(_ *regtest.Registry, b blobs) regtest.Hook {
				return regtest.FailGETs("blob", b.top, -1, http.StatusServiceUnavailable)
			},
			retried: func(reg *regtest.Registry, b blobs) int { return reg.BlobGets(b.top) }},
		{name: "every manifest GET reset midway", class: errdefs.ErrUnavailable, want: "resolving",
			fault:   func(reg *regtest.Registry, _ blobs) regtest.Hook { return regtest.ResetConn(reg, "manifest", "1", -1) },
			retried: func(reg *regtest.Registry, _ blobs) int { return reg.ManifestGets("app", "1") }},
		{name: "every layer GET reset midway", class: errdefs.ErrUnavailable, want: "connection reset",
			fault:   func(reg *regtest.Registry, b blobs) regtest.Hook { return regtest.ResetConn(reg, "blob", b.bottom, -1) },
			retried: func(reg *regtest.Registry, b blobs) int { return reg.BlobGets(b.bottom) }},
		{name: "truncated layer", class: errdefs.ErrFailedPrecondition, want: "the manifest says",
			fault: func(reg *regtest.Registry, b blobs) regtest.Hook { return regtest.TruncateBlob(reg, b.top) }},
		{name: "manifest never answered", class: errdefs.ErrDeadlineExceeded, want: "progress", progressTimeout: 500 * time.Millisecond,
			fault: func(*regtest.Registry, blobs) regtest.Hook { return regtest.Hang("manifest", "1") }},
		{name: "one 503 on the config",
			fault: func(_ *regtest.Registry, b blobs) regtest.Hook {
				return regtest.FailGETs("blob", b.config, 1, http.StatusServiceUnavailable)
			},
			retried: func(reg *regtest.Registry, b blobs) int { return reg.BlobGets(b.config) }},
		{name: "one manifest GET reset midway",
			fault:   func(reg *regtest.Registry, _ blobs) regtest.Hook { return regtest.ResetConn(reg, "manifest", "1", 1) },
			retried: func(reg *regtest.Registry, _ blobs) int { return reg.ManifestGets("app", "1") }},
		{name: "one layer GET reset midway",
			fault:   func(reg *regtest.Registry, b blobs) regtest.Hook { return regtest.ResetConn(reg, "blob", b.top, 1) },
			retried: func(reg *regtest.Registry, b blobs) int { return reg.BlobGets(b.top) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				if tc.progressTimeout > 0 {
					o.ProgressTimeout = tc.progressTimeout
				}
			})
			img := e.push("app:1", "", layers(t, 1, 2)...)
			config, layerBlobs := digests(t, img)
			b := blobs{config: config, bottom: layerBlobs[0], top: layerBlobs[1]}
			e.reg.AddHook(tc.fault(e.reg, b))
			start := time.Now()
			id, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{})
			t.Logf("pull (%s): %v", time.Since(start).Round(time.Millisecond), err)
			if tc.class == nil {
				if err != nil || id != imageID(t, img) {
					t.Fatalf("pull: %s, %v; want the image despite one fault", id, err)
				}
			} else {
				if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), e.reg.Host) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("pull: %v; want class %v, naming the registry and saying %q", err, tc.class, tc.want)
				}
				if list, _ := e.svc.List(context.Background(), ""); len(list) != 0 {
					t.Errorf("a failed pull left %d images", len(list))
				}
				e.assertNoLeftovers()
			}
			if tc.retried != nil {
				if n := tc.retried(e.reg, b); n < 2 {
					t.Errorf("the faulty request was made %d times: not retried", n)
				}
			}
			e.reg.ClearHooks()
			if _, err := e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}); err != nil {
				t.Fatalf("pull once the registry recovered: %v", err)
			}
		})
	}
}
