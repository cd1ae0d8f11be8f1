package netcni

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
)

// fakePlugins makes a plugin directory with do-nothing executables, enough
// for readiness, which only looks binaries up.
func fakePlugins(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const bridgeConflist = `{
  "cniVersion": "1.0.0",
  "name": "NAME",
  "plugins": [
    {"type": "bridge", "bridge": "nbr0", "ipam": {"type": "host-local", "subnet": "10.234.0.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`

func writeConf(t *testing.T, dir, file, body string) {
	t.Helper()
	// Write then rename, the way config installers do.
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

func TestStatusPicksUpConfigWithoutRestart(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "net.d") // does not exist yet
	plugins := fakePlugins(t, "bridge", "host-local", "portmap")
	m, err := New(Options{ConfDir: confDir, PluginDirs: []string{plugins}, CacheDir: filepath.Join(root, "cache")})
	if err != nil {
		t.Fatal(err)
	}

	wantNotReady := func(t *testing.T, substr string) {
		t.Helper()
		err := m.Status()
		if err == nil {
			t.Fatal("Status() = nil, want not ready")
		}
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("Status() error class: %v, want FailedPrecondition", err)
		}
		if !strings.Contains(err.Error(), substr) {
			t.Errorf("Status() = %q, want it to mention %q", err, substr)
		}
	}
	wantReady := func(t *testing.T, name string) {
		t.Helper()
		if err := m.Status(); err != nil {
			t.Fatalf("Status() = %v, want ready", err)
		}
		got, _, err := m.NetworkName()
		if err != nil || got != name {
			t.Fatalf("NetworkName() = %q, %v; want %q", got, err, name)
		}
	}

	// Steps run in order on the same Manager: each changes the directory
	// and checks the next Status sees it.
	steps := []struct {
		name   string
		change func(t *testing.T)
		check  func(t *testing.T)
	}{
		{"missing directory", func(t *testing.T) {},
			func(t *testing.T) { wantNotReady(t, "no network config found in "+confDir) }},
		{"empty directory", func(t *testing.T) {
			if err := os.MkdirAll(confDir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) { wantNotReady(t, "no network config found in "+confDir) }},
		{"unrelated and invalid files", func(t *testing.T) {
			writeConf(t, confDir, "README", "not a config")
			writeConf(t, confDir, "05-broken.conflist", "{")
		}, func(t *testing.T) { wantNotReady(t, "05-broken.conflist") }},
		{"valid config appears", func(t *testing.T) {
			writeConf(t, confDir, "10-pods.conflist", strings.Replace(bridgeConflist, "NAME", "pods", 1))
		}, func(t *testing.T) { wantReady(t, "pods") }},
		{"lexically later config is ignored", func(t *testing.T) {
			writeConf(t, confDir, "20-later.conf", `{"cniVersion":"1.0.0","name":"later","type":"bridge"}`)
		}, func(t *testing.T) { wantReady(t, "pods") }},
		{"lexically earlier .conf wins", func(t *testing.T) {
			writeConf(t, confDir, "00-first.conf", `{"cniVersion":"1.0.0","name":"first","type":"bridge"}`)
		}, func(t *testing.T) { wantReady(t, "first") }},
		{"in-place rewrite is seen", func(t *testing.T) {
			p := filepath.Join(confDir, "00-first.conf")
			// Same size, new content, written in place.
			if err := os.WriteFile(p, []byte(`{"cniVersion":"1.0.0","name":"fir2t","type":"bridge"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			// Make sure the mtime moves even on a coarse clock.
			future := time.Now().Add(2 * time.Second)
			if err := os.Chtimes(p, future, future); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) { wantReady(t, "fir2t") }},
		{"plugin binary missing", func(t *testing.T) {
			writeConf(t, confDir, "00-first.conf", `{"cniVersion":"1.0.0","name":"first","type":"macvlan"}`)
		}, func(t *testing.T) { wantNotReady(t, `"macvlan" not found`) }},
		{"plugin binary installed later", func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(plugins, "macvlan"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) { wantReady(t, "first") }},
		{"configs removed", func(t *testing.T) {
			for _, f := range []string{"00-first.conf", "10-pods.conflist", "20-later.conf", "05-broken.conflist"} {
				if err := os.Remove(filepath.Join(confDir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}, func(t *testing.T) { wantNotReady(t, "no network config found in "+confDir) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.change(t); s.check(t) }) {
			return
		}
	}
}

func TestSetupNotReady(t *testing.T) {
	root := t.TempDir()
	m, err := New(Options{ConfDir: filepath.Join(root, "net.d"), PluginDirs: []string{root}, CacheDir: filepath.Join(root, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	pod := PodNetwork{ID: "abc", Name: "p", Namespace: "default", NetNSPath: "/proc/self/ns/net"}
	if _, err := m.Setup(context.Background(), pod); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Setup without config = %v, want FailedPrecondition", err)
	}
	// Teardown of a pod that was never set up, with no config, is fine.
	for range 2 {
		if err := m.Teardown(context.Background(), pod); err != nil {
			t.Errorf("Teardown without config or cache = %v", err)
		}
	}
	if _, err := m.CachedResult("abc"); !errdefs.IsNotFound(err) {
		t.Errorf("CachedResult = %v, want NotFound", err)
	}
}

func TestPodValidation(t *testing.T) {
	m, err := New(Options{ConfDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pod  PodNetwork
	}{
		{"no ID", PodNetwork{Name: "p", NetNSPath: "/proc/self/ns/net"}},
		{"semicolon in name", PodNetwork{ID: "x", Name: "a;b", NetNSPath: "/proc/self/ns/net"}},
		{"equals in namespace", PodNetwork{ID: "x", Namespace: "a=b", NetNSPath: "/proc/self/ns/net"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Setup(context.Background(), tt.pod); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Setup = %v, want InvalidArgument", err)
			}
			if err := m.Teardown(context.Background(), tt.pod); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Teardown = %v, want InvalidArgument", err)
			}
		})
	}
	if _, err := m.Setup(context.Background(), PodNetwork{ID: "x", NetNSPath: filepath.Join(t.TempDir(), "gone")}); !errdefs.IsNotFound(err) {
		t.Errorf("Setup with a missing netns = %v, want NotFound", err)
	}
	if _, err := New(Options{ConfDir: "relative"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New with a relative dir = %v, want InvalidArgument", err)
	}
}
