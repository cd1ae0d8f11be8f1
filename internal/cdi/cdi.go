// Package cdi resolves Container Device Interface devices
// (vendor.com/class=name) from the CDI spec files of the node and applies
// their edits (device nodes and their cgroup rules, mounts, environment,
// hooks, extra groups) to an OCI spec, with the CDI project's own library
// (tags.cncf.io/container-device-interface).
//
// Specs are read again each time a container asks for a CDI device, never
// in the background: a device plugin or DRA driver writes its spec (in
// /var/run/cdi, typically) moments before the kubelet's CreateContainer,
// and the library's directory watcher would apply that write only after
// an fsnotify event reached its goroutine, a race the request would lose
// now and then. A rescan costs a read of a few small files, and only
// containers that ask for a device pay it.
package cdi

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/noded-dev/noded/internal/errdefs"
)

// DefaultSpecDirs are the CDI specification's directories: static specs
// in /etc/cdi, generated ones in /var/run/cdi, which wins for a device
// both define.
var DefaultSpecDirs = []string{cdilib.DefaultStaticDir, cdilib.DefaultDynamicDir}

// Registry is the CDI devices of the spec directories. It is safe for
// concurrent use.
type Registry struct {
	dirs  []string
	cache *cdilib.Cache
	// mu makes a refresh and the injection that follows it one step, so
	// that the errors reported with an unknown device are the ones of the
	// scan that missed it.
	mu sync.Mutex
}

// New returns the registry of dirs, later ones taking precedence, and the
// errors of the spec files it could not load (a broken spec of one vendor
// leaves the others usable). Missing directories are no error: they are
// read once they exist.
func New(dirs []string) (*Registry, []error) {
	// Auto-refresh off: no watcher goroutine or inotify instance; Inject
	// rescans (see the package comment).
	cache, _ := cdilib.NewCache(cdilib.WithSpecDirs(dirs...), cdilib.WithAutoRefresh(false))
	return &Registry{dirs: append([]string(nil), dirs...), cache: cache}, specErrors(cache)
}

// Dirs returns the spec directories, lowest precedence first.
func (r *Registry) Dirs() []string { return append([]string(nil), r.dirs...) }

// Devices lists the qualified names of the devices the specs define, as of
// the last scan.
func (r *Registry) Devices() []string { return r.cache.ListDevices() }

// CheckName refuses a device name that is not a fully qualified CDI name
// (vendor.com/class=name); it needs no spec.
func CheckName(name string) error {
	if _, _, _, err := parser.ParseQualifiedName(name); err != nil {
		return errdefs.InvalidArgument("CDI device %q: %v", name, err)
	}
	return nil
}

// DevicesFromAnnotations returns the CDI devices requested through
// annotations (cdi.k8s.io/<plugin>_<device>: "vendor.com/class=name,..."),
// the form device plugins use when they answer Allocate with annotations
// rather than CDI device names. They come in the order of the keys, so
// that the same request always gives the same spec.
func DevicesFromAnnotations(annotations map[string]string) ([]string, error) {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, cdilib.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		_, devices, err := cdilib.ParseAnnotations(map[string]string{k: annotations[k]})
		if err != nil {
			return nil, errdefs.InvalidArgument("CDI annotation %q: %v", k, err)
		}
		out = append(out, devices...)
	}
	return out, nil
}

// Inject rescans the spec directories and applies the edits of devices to
// spec. A device no spec defines is an errdefs InvalidArgument error
// naming it (and the spec files that failed to load, in case one of them
// was meant to define it); edits that cannot be applied (a host device
// node that is missing, say) are FailedPrecondition. spec is changed only
// on success.
func (r *Registry) Inject(spec *specs.Spec, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	for _, d := range devices {
		if err := CheckName(d); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// In manual mode Refresh always rescans; its error only joins those of
	// broken spec files, which matter only if a device is then missing.
	_ = r.cache.Refresh()
	// The library edits the spec in place and may fail half-way: it works
	// on a copy, which replaces spec only when every edit applied.
	edited, err := copySpec(spec)
	if err != nil {
		return err
	}
	unresolved, err := r.cache.InjectDevices(edited, devices...)
	if len(unresolved) > 0 {
		msg := fmt.Sprintf("unknown CDI device %s: no CDI spec in %s defines it",
			quoteAll(unresolved), strings.Join(r.dirs, ", "))
		if errs := specErrors(r.cache); len(errs) > 0 {
			texts := make([]string, len(errs))
			for i, e := range errs {
				texts[i] = e.Error()
			}
			msg += " (CDI specs that failed to load: " + strings.Join(texts, "; ") + ")"
		}
		return errdefs.InvalidArgument("%s", msg)
	}
	if err != nil {
		return errdefs.FailedPrecondition("injecting CDI devices %s: %v", quoteAll(devices), err)
	}
	*spec = *edited
	return nil
}

// specErrors flattens the cache's per-file load errors, in file order,
// each naming its file.
func specErrors(c *cdilib.Cache) []error {
	byFile := c.GetErrors()
	files := make([]string, 0, len(byFile))
	for f := range byFile {
		files = append(files, f)
	}
	sort.Strings(files)
	var out []error
	for _, f := range files {
		for _, err := range byFile[f] {
			out = append(out, fmt.Errorf("%s: %w", f, err))
		}
	}
	return out
}

// copySpec returns a deep copy of spec: through JSON, the form it is
// written to the bundle in anyway.
func copySpec(spec *specs.Spec) (*specs.Spec, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var out specs.Spec
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
