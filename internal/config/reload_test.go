package config

import (
	"slices"
	"testing"
	"time"
)

func TestReloadableKeysExist(t *testing.T) {
	for _, k := range reloadable {
		if Help(k) == "" {
			t.Errorf("reloadable key %q is not a configuration key", k)
		}
		if _, ok := fieldsByKey(Default())[k]; !ok {
			t.Errorf("reloadable key %q has no field", k)
		}
	}
}

func TestChanged(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"string", func(c *Config) { c.LogLevel = "warn" }, []string{"log-level"}},
		{"list", func(c *Config) { c.PinnedImages = []string{"x/*"} }, []string{"pinned-images"}},
		{"duration", func(c *Config) { c.PullProgressTimeout = Duration{3 * time.Second} }, []string{"pull-progress-timeout"}},
		{"count and restart-only duration", func(c *Config) { c.MaxParallelDownloads = 7; c.ShutdownTimeout = Duration{time.Hour} },
			[]string{"max-parallel-downloads", "shutdown-timeout"}},
		{"restart-only path", func(c *Config) { c.Listen = "/tmp/other.sock" }, []string{"listen"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Default(), Default()
			tc.change(b)
			if got := Changed(a, b); !slices.Equal(got, tc.want) {
				t.Errorf("Changed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWithReloaded(t *testing.T) {
	running, next := Default(), Default()
	next.LogFormat = "json"
	next.PinnedImages = []string{"registry.example/*"}
	next.MaxParallelDownloads = 9
	next.Listen = "/elsewhere.sock"
	next.StreamIdleTimeout = Duration{time.Minute}
	got := WithReloaded(running, next)
	if left := Changed(got, next); !slices.Equal(left, []string{"listen", "stream-idle-timeout"}) {
		t.Errorf("after the reload these differ from the file: %v, want only the restart-only keys", left)
	}
	if Changed(running, Default()) != nil {
		t.Error("WithReloaded changed the running configuration in place")
	}
	for _, k := range Changed(running, got) {
		if !Reloadable(k) {
			t.Errorf("restart-only key %q changed", k)
		}
	}
}
