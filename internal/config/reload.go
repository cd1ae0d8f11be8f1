package config

import (
	"reflect"
	"slices"
)

// reloadable are the keys a running noded applies when it is told to
// reload (SIGHUP, systemd's ExecReload): settings read at each use, whose
// change cannot break what already runs. Every other key is read once, at
// start (sockets, directories, the storage driver, the cgroup driver, the
// streaming server, NRI), and a reload that changes one names it in a
// warning and keeps the old value.
//
// registries-conf, signature-policy and cni-config-dir are paths and need
// a restart to change, but the files they name are re-read while noded
// runs: registries.conf and policy.json at each pull (when their
// modification time changed), the CNI directory at each pod network
// set-up; a reload re-reads them at once.
var reloadable = []string{
	"log-level", "log-format",
	"pause-image", "pinned-images",
	"max-parallel-downloads", "pull-progress-timeout",
}

// Reloadable reports whether a reload applies key without a restart.
func Reloadable(key string) bool { return slices.Contains(reloadable, key) }

// Changed returns the keys whose values differ between a and b, in the
// order of Keys.
func Changed(a, b *Config) []string {
	va, vb := fieldsByKey(a), fieldsByKey(b)
	var out []string
	for _, k := range Keys {
		fa, okA := va[k.Name]
		fb, okB := vb[k.Name]
		if okA && okB && !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, k.Name)
		}
	}
	return out
}

// WithReloaded returns a copy of running in which the reloadable keys have
// next's values: what a reload leaves in effect.
func WithReloaded(running, next *Config) *Config {
	out := *running
	dst, src := fieldsByKey(&out), fieldsByKey(next)
	for _, k := range reloadable {
		dst[k].Set(src[k])
	}
	return &out
}

// fieldsByKey maps each TOML key to its (settable) field in c.
func fieldsByKey(c *Config) map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make(map[string]reflect.Value, t.NumField())
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			out[tag] = v.Field(i)
		}
	}
	return out
}
