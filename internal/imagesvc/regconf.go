package imagesvc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.podman.io/image/v5/pkg/sysregistriesv2"
)

// regConfWatch makes an edited registries.conf (or drop-in) apply to the
// next pull without a restart: containers/image caches the parsed files
// for the life of the process, so the cache is dropped whenever their
// modification times change.
type regConfWatch struct {
	mu    sync.Mutex
	paths []string // files and drop-in directories
	last  string
}

// newRegConfWatch watches conf, the configured file (see
// Options.RegistriesConf), or containers/image's default location.
func newRegConfWatch(conf string) *regConfWatch {
	if conf == "" {
		return &regConfWatch{paths: []string{"/etc/containers/registries.conf", "/etc/containers/registries.conf.d"}}
	}
	return &regConfWatch{paths: []string{conf, conf + ".d"}}
}

// invalidate drops containers/image's cache now (a reload): the files are
// read again at the next pull even if their times did not change.
func (w *regConfWatch) invalidate() {
	w.mu.Lock()
	defer w.mu.Unlock()
	sysregistriesv2.InvalidateCache()
}

// check drops containers/image's cache if the files changed since the
// last call.
func (w *regConfWatch) check() {
	var sig strings.Builder
	for _, p := range w.paths {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&sig, "%s %d %d;", p, fi.ModTime().UnixNano(), fi.Size())
		}
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				fmt.Fprintf(&sig, "%s %d %d;", filepath.Join(p, e.Name()), fi.ModTime().UnixNano(), fi.Size())
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := sig.String(); s != w.last {
		if w.last != "" {
			sysregistriesv2.InvalidateCache()
		}
		w.last = s
	}
}
