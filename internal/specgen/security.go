package specgen

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

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

// maskedPaths returns the request's lists, else the defaults; none for a
// privileged container. The kubelet always sends both lists, so the
// defaults only serve other clients. (An empty list cannot be told from an
// absent one on the wire; the kubelet sends empty lists only for
// procMount: Unmasked, which needs user namespaces noded does not support.)
func maskedPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if masked == nil {
		masked = DefaultMaskedPaths()
	}
	if readonly == nil {
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
// wins over the deprecated path. Nothing requested means unconfined, as in
// containerd: the kubelet asks for RuntimeDefault when the pod or its
// SeccompDefault setting wants it. Privileged containers are never
// filtered.
func seccompProfile(sp *runtimeapi.SecurityProfile, deprecated string, privileged bool, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	if sp == nil {
		var err error
		if sp, err = profileFromPath(deprecated); err != nil {
			return nil, err
		}
	}
	if privileged || sp == nil {
		return nil, nil
	}
	if sp.GetProfileType() != runtimeapi.SecurityProfile_Localhost && sp.GetLocalhostRef() != "" {
		return nil, errdefs.InvalidArgument("seccomp localhost_ref is only valid with the Localhost profile type")
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
		return localhostSeccomp(sp.GetLocalhostRef(), spec)
	}
	return nil, errdefs.InvalidArgument("unknown seccomp profile type %d", sp.GetProfileType())
}

// localhostSeccomp loads a profile file of the node. The Docker format it
// accepts is a superset of the OCI one, so both kinds of file work.
func localhostSeccomp(ref string, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	// The deprecated field carries "localhost/<abs path>"; trim again in
	// case a client put the prefix into localhost_ref too.
	path := strings.TrimPrefix(ref, profileLocalhost)
	if !filepath.IsAbs(path) {
		return nil, errdefs.InvalidArgument("seccomp profile %q is not an absolute path", ref)
	}
	body, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("seccomp profile %q not found", path)
	}
	if err != nil {
		return nil, errdefs.FailedPrecondition("reading seccomp profile %q: %v", path, err)
	}
	p, err := seccomp.LoadProfile(string(body), spec)
	if err != nil {
		return nil, errdefs.InvalidArgument("seccomp profile %q: %v", path, err)
	}
	return p, nil
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
