package specgen

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Profile names of the deprecated string fields (seccomp_profile_path,
// apparmor_profile).
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// DefaultMaskedPaths are hidden from unprivileged containers: the kubelet's
// and containerd's list.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
		"/proc/scsi",
	}
}

// DefaultReadonlyPaths are read-only in unprivileged containers.
func DefaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// maskedPaths returns the request's lists as sent; none for a privileged
// container. An empty list cannot be told from an absent one on the wire,
// so an empty list means none only where the kubelet sends one: it sends
// both lists always, filled for procMount: Default and empty for
// procMount: Unmasked, which Kubernetes allows only with hostUsers: false,
// i.e. in a user namespace. Without one, an empty list is a client that
// sent nothing (crictl, say), and it gets the defaults, as CRI-O gives.
func maskedPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	// (POD is the enum's zero value: the options must be there.)
	if u := sc.GetNamespaceOptions().GetUsernsOptions(); u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD {
		return slices.Clone(masked), slices.Clone(readonly)
	}
	if len(masked) == 0 {
		masked = DefaultMaskedPaths()
	}
	if len(readonly) == 0 {
		readonly = DefaultReadonlyPaths()
	}
	return slices.Clone(masked), slices.Clone(readonly)
}

// profileFromPath turns a deprecated profile string into a SecurityProfile;
// "" gives nil (not requested).
func profileFromPath(p string) (*runtimeapi.SecurityProfile, error) {
	switch {
	case p == "":
		return nil, nil
	case p == profileRuntimeDefault || p == profileDockerDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case p == profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	case strings.HasPrefix(p, profileLocalhost):
		return &runtimeapi.SecurityProfile{
			ProfileType:  runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: strings.TrimPrefix(p, profileLocalhost),
		}, nil
	}
	return nil, errdefs.InvalidArgument("invalid security profile %q", p)
}

// seccompProfile returns the seccomp filter for a process whose
// capabilities are already in spec (the default profile allows some
// system calls only to holders of a capability). The newer SecurityProfile
// wins over the deprecated path. Nothing requested means the runtime
// default, as in CRI-O (seccomp_use_default_when_empty, its default since
// 1.23), not unconfined as in containerd, unless the node says
// otherwise (seccomp-when-empty): the kubelet always says what it wants
// (Unconfined unless the pod or SeccompDefault asks for more), so only
// other clients send nothing, and by default they get the stricter
// answer. Privileged containers are never filtered. node's
// SeccompProfileRoot, when set, is the only directory Localhost profiles
// may come from.
func seccompProfile(sp *runtimeapi.SecurityProfile, deprecated string, privileged bool, spec *specs.Spec, node *Node) (*specs.LinuxSeccomp, error) {
	sp, err := requestedSeccomp(sp, deprecated, privileged, node.SeccompUnconfinedWhenEmpty)
	if err != nil || sp == nil {
		return nil, err
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		p, err := seccomp.GetDefaultProfile(spec)
		if err != nil {
			return nil, errdefs.FailedPrecondition("default seccomp profile: %v", err)
		}
		return p, nil
	case runtimeapi.SecurityProfile_Localhost:
		return localhostSeccomp(sp.GetLocalhostRef(), node.SeccompProfileRoot, spec)
	}
	return nil, errdefs.InvalidArgument("unknown seccomp profile type %d", sp.GetProfileType())
}

// requestedSeccomp is the profile a container asks for, checked as far as
// it can be without the host; nil for a privileged container. A request
// that names none gets the runtime default, or Unconfined when
// unconfinedWhenEmpty.
func requestedSeccomp(sp *runtimeapi.SecurityProfile, deprecated string, privileged, unconfinedWhenEmpty bool) (*runtimeapi.SecurityProfile, error) {
	if sp == nil {
		var err error
		if sp, err = profileFromPath(deprecated); err != nil {
			return nil, err
		}
	}
	if privileged {
		return nil, nil
	}
	if sp == nil {
		sp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		if unconfinedWhenEmpty {
			sp.ProfileType = runtimeapi.SecurityProfile_Unconfined
		}
	}
	return sp, checkSeccompRef(sp)
}

// checkSeccompRef checks what can be checked of a profile without the
// host: the type, and that a Localhost profile is named by an absolute
// path without ".." (the kubelet sends <root-dir>/seccomp/<name>; a ".."
// is how a request would leave the profile directory).
func checkSeccompRef(sp *runtimeapi.SecurityProfile) error {
	ref := sp.GetLocalhostRef()
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Localhost:
		// The deprecated field carries "localhost/<abs path>"; trim again in
		// case a client put the prefix into localhost_ref too.
		if p := strings.TrimPrefix(ref, profileLocalhost); !filepath.IsAbs(p) || hasDotDot(p) {
			return errdefs.InvalidArgument("seccomp profile %q is not an absolute path without \"..\"", ref)
		}
	case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
		if ref != "" {
			return errdefs.InvalidArgument("seccomp localhost_ref is only valid with the Localhost profile type")
		}
	default:
		return errdefs.InvalidArgument("unknown seccomp profile type %d", sp.GetProfileType())
	}
	return nil
}

// hasDotDot reports whether a slash-separated path has a ".." component.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// maxSeccompProfile bounds a profile file: moby's default profile, the
// largest in common use, is about 20 KB.
const maxSeccompProfile = 1 << 20

// localhostSeccomp loads a profile file of the node. The Docker format it
// accepts is a superset of the OCI one, so both kinds of file work.
func localhostSeccomp(ref, root string, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	path := strings.TrimPrefix(ref, profileLocalhost)
	body, err := readProfile(path, root)
	if err != nil {
		return nil, err
	}
	p, err := seccomp.LoadProfile(string(body), spec)
	if err != nil {
		return nil, errdefs.InvalidArgument("seccomp profile %q: %v", path, err)
	}
	return p, nil
}

// readProfile reads a profile file with its symlinks resolved, refusing
// one that resolves outside root (when set) and anything but a regular
// file of at most maxSeccompProfile bytes: a request naming /dev/zero or a
// FIFO must not have noded read forever or wait for a writer.
func readProfile(path, root string) ([]byte, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("seccomp profile %q not found", path)
	}
	if err != nil {
		return nil, errdefs.FailedPrecondition("seccomp profile %q: %v", path, err)
	}
	if root != "" {
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			return nil, errdefs.FailedPrecondition("seccomp profile directory %q: %v", root, err)
		}
		if rel, err := filepath.Rel(realRoot, real); err != nil || !filepath.IsLocal(rel) {
			return nil, errdefs.InvalidArgument("seccomp profile %q is outside the profile directory %s", path, root)
		}
	}
	// O_NONBLOCK: opening a FIFO does not wait for a writer; it changes
	// nothing for a regular file.
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, errdefs.FailedPrecondition("reading seccomp profile %q: %v", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errdefs.InvalidArgument("seccomp profile %q is not a regular file", path)
	}
	body, err := io.ReadAll(io.LimitReader(f, maxSeccompProfile+1))
	switch {
	case err != nil:
		return nil, errdefs.FailedPrecondition("reading seccomp profile %q: %v", path, err)
	case len(body) > maxSeccompProfile:
		return nil, errdefs.InvalidArgument("seccomp profile %q is larger than %d bytes", path, maxSeccompProfile)
	}
	return body, nil
}

// checkAppArmor applies containerd's rule for a host without AppArmor
// (noded never loads AppArmor profiles): only "unconfined", or nothing, is
// accepted; a RuntimeDefault or Localhost request cannot be honoured and
// fails rather than silently running unconfined.
func checkAppArmor(sp *runtimeapi.SecurityProfile, deprecated string) error {
	if sp == nil {
		var err error
		if sp, err = profileFromPath(deprecated); err != nil {
			return err
		}
	}
	if sp == nil || sp.GetProfileType() == runtimeapi.SecurityProfile_Unconfined {
		return nil
	}
	return errdefs.InvalidArgument("apparmor profile %s is requested but AppArmor is not supported by noded", describeProfile(sp))
}

func describeProfile(sp *runtimeapi.SecurityProfile) string {
	if sp.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		return "localhost/" + sp.GetLocalhostRef()
	}
	return sp.GetProfileType().String()
}
