package specgen

import (
	"path"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Container paths of the files a pod shares with its containers.
const (
	etcHosts      = "/etc/hosts"
	etcResolvConf = "/etc/resolv.conf"
	etcHostname   = "/etc/hostname"
	devShm        = "/dev/shm"
	hostDevShm    = "/dev/shm"
	// DefaultTerminationMessagePath is Kubernetes' default for
	// terminationMessagePath.
	DefaultTerminationMessagePath = "/dev/termination-log"
	// annotationTerminationMessagePath is where the kubelet records the
	// container's terminationMessagePath.
	annotationTerminationMessagePath = "io.kubernetes.container.terminationMessagePath"
)

// defaultMounts are the file systems every container gets, containerd's
// list without its /run tmpfs (the CRI plugin removes it too). sysfs and
// cgroupfs are writable only for a privileged container. cgroupOpts are
// extra options of the cgroup mount.
func defaultMounts(privileged bool, cgroupOpts []string) []specs.Mount {
	mode := "ro"
	if privileged {
		mode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: devShm, Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", mode}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
			Options: append([]string{"nosuid", "noexec", "nodev", "relatime", mode}, cgroupOpts...)},
	}
}

// sandboxFileMounts returns the pod's shared files as CRI mounts, leaving
// out any path the container mounts itself. They are read-only when the
// root file system is, as in containerd; /dev/shm stays writable. A
// container in the host IPC namespace shares the host's /dev/shm.
func sandboxFileMounts(files SandboxFiles, readonly, hostIPC bool) []*runtimeapi.Mount {
	shm := podShm(files, hostIPC)
	var out []*runtimeapi.Mount
	add := func(dst, src string, ro bool) {
		if src != "" {
			out = append(out, &runtimeapi.Mount{ContainerPath: dst, HostPath: src, Readonly: ro})
		}
	}
	add(etcHostname, files.Hostname, readonly)
	add(etcHosts, files.Hosts, readonly)
	add(etcResolvConf, files.ResolvConf, readonly)
	add(devShm, shm, false)
	return out
}

// podShm is the pod's /dev/shm on the host: the host's own for a pod in
// the host's IPC namespace.
func podShm(files SandboxFiles, hostIPC bool) string {
	if hostIPC {
		return hostDevShm
	}
	return files.Shm
}

// hardenPodShm mounts the pod's /dev/shm nosuid, nodev and noexec in the
// container, as its tmpfs is on the host and as CRI-O and containerd do: a
// bind mount takes only the flags it is given (runc 1.2 and later no
// longer keep the source's for an explicit "rw"), and without them a
// setuid binary or a device node written there would work. binds are
// bindMounts(all), in the same order; a /dev/shm of the request's own (an
// emptyDir, say) is left as asked.
func hardenPodShm(all []*runtimeapi.Mount, binds []specs.Mount, shm string) {
	if shm == "" {
		return
	}
	for i, m := range all {
		if path.Clean(m.GetContainerPath()) == devShm && m.GetHostPath() == shm {
			binds[i].Options = append(binds[i].Options, "nosuid", "nodev", "noexec")
		}
	}
}

// terminationMessageMount mounts file at the container's termination message
// path (the kubelet's annotation, else Kubernetes' default).
func terminationMessageMount(file string, annotations map[string]string) []*runtimeapi.Mount {
	if file == "" {
		return nil
	}
	dst := annotations[annotationTerminationMessagePath]
	if dst == "" {
		dst = DefaultTerminationMessagePath
	}
	return []*runtimeapi.Mount{{ContainerPath: dst, HostPath: file}}
}

// mergeMounts adds extra mounts to the request's, a request mount winning
// on the same destination, and sorts them by depth so that a mount never
// hides one below it (Docker's and containerd's order).
func mergeMounts(cri, extra []*runtimeapi.Mount) []*runtimeapi.Mount {
	out := slices.Clone(cri)
	for _, e := range extra {
		if !mountsAt(cri, e.GetContainerPath()) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return depth(out[i].GetContainerPath()) < depth(out[j].GetContainerPath())
	})
	return out
}

func mountsAt(mounts []*runtimeapi.Mount, dst string) bool {
	return slices.ContainsFunc(mounts, func(m *runtimeapi.Mount) bool {
		return path.Clean(m.GetContainerPath()) == path.Clean(dst)
	})
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

// withoutShadowed drops default mounts a bind mount replaces: the same
// destination, or anything under /dev when /dev itself is bound.
func withoutShadowed(defaults []specs.Mount, binds []*runtimeapi.Mount) []specs.Mount {
	devBound := mountsAt(binds, "/dev")
	return slices.DeleteFunc(defaults, func(m specs.Mount) bool {
		return mountsAt(binds, m.Destination) || (devBound && strings.HasPrefix(m.Destination, "/dev/"))
	})
}

// bindMounts turns CRI mounts into OCI bind mounts and returns the root
// propagation they need: rshared for a bidirectional mount, else rslave for
// a host-to-container one, else "" (runc's default, rprivate).
func bindMounts(mounts []*runtimeapi.Mount, fs HostFS) ([]specs.Mount, string, error) {
	var out []specs.Mount
	rootProp := ""
	for _, m := range mounts {
		om, prop, err := bindMount(m, fs)
		if err != nil {
			return nil, "", err
		}
		out = append(out, om)
		if prop == "rshared" || (prop == "rslave" && rootProp == "") {
			rootProp = prop
		}
	}
	return out, rootProp, nil
}

func bindMount(m *runtimeapi.Mount, fs HostFS) (specs.Mount, string, error) {
	prop, access, err := checkMount(m)
	if err != nil {
		return specs.Mount{}, "", err
	}
	extra, err := mountOptions(m)
	if err != nil {
		return specs.Mount{}, "", err
	}
	opts := []string{"rbind", prop, access}
	src := "" // an image mount's: the runtime's mount of the image (Container.imageVolumeSources)
	if m.GetImage() != nil {
		opts = append(opts, imageMountFlags...)
	} else if src, err = hostBindSource(m, prop, fs); err != nil {
		return specs.Mount{}, "", err
	}
	opts = withOptions(opts, extra...)
	uids, gids, err := mountIDMappings(m)
	if err != nil {
		return specs.Mount{}, "", err
	}
	return specs.Mount{
		UIDMappings: uids,
		GIDMappings: gids,
		Destination: path.Clean(m.GetContainerPath()),
		Type:        "bind",
		Source:      src,
		Options:     opts,
	}, prop, nil
}

// hostBindSource prepares a host path mount's source (see HostFS) and
// checks that its propagation can work.
func hostBindSource(m *runtimeapi.Mount, prop string, fs HostFS) (string, error) {
	src, err := fs.BindSource(m.GetHostPath())
	if err != nil {
		return "", errdefs.FailedPrecondition("mount source %q: %v", m.GetHostPath(), err)
	}
	if err := checkSourcePropagation(src, prop, fs); err != nil {
		return "", err
	}
	return src, nil
}

// checkMount refuses what noded cannot mount: relative paths, paths with
// ".." (Kubernetes refuses them in a hostPath; in a container path runc
// would keep it inside the root file system, but the request cannot mean
// what it says), ID-mapped mounts without both uid and gid mappings or
// with an empty range (mountIDMappings), image mounts that
// are not read-only or whose sub path leaves the image (checkImageMount),
// unknown propagation and access modes. It needs no host and returns the
// mount's propagation and access.
func checkMount(m *runtimeapi.Mount) (prop, access string, err error) {
	switch {
	case !path.IsAbs(m.GetContainerPath()):
		err = errdefs.InvalidArgument("mount destination %q is not an absolute path", m.GetContainerPath())
	case hasDotDot(m.GetContainerPath()):
		err = errdefs.InvalidArgument("mount destination %q has a \"..\" component", m.GetContainerPath())
	case m.GetImage() != nil:
		err = checkImageMount(m)
	case !path.IsAbs(m.GetHostPath()):
		err = errdefs.InvalidArgument("mount source %q is not an absolute path", m.GetHostPath())
	case hasDotDot(m.GetHostPath()):
		err = errdefs.InvalidArgument("mount source %q has a \"..\" component", m.GetHostPath())
	default:
		_, _, err = mountIDMappings(m)
	}
	if err != nil {
		return "", "", err
	}
	if prop, err = propagation(m.GetPropagation()); err != nil {
		return "", "", err
	}
	if m.GetImage() != nil {
		prop = imageMountPropagation
	}
	access, err = mountAccess(m)
	return prop, access, err
}

func propagation(p runtimeapi.MountPropagation) (string, error) {
	switch p {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		return "rprivate", nil
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		return "rslave", nil
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		return "rshared", nil
	}
	return "", errdefs.InvalidArgument("unknown mount propagation %d", p)
}

// mountAccess returns "ro", "rw" or "rro". A recursive read-only mount
// must be read-only and private: a propagated sub-mount could not be made
// read-only after the fact.
func mountAccess(m *runtimeapi.Mount) (string, error) {
	switch {
	case m.GetRecursiveReadOnly() && !m.GetReadonly():
		return "", errdefs.InvalidArgument("recursive read-only mount %q must also be read-only", m.GetHostPath())
	case m.GetRecursiveReadOnly() && m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		return "", errdefs.InvalidArgument("recursive read-only mount %q needs private propagation, not %s",
			m.GetHostPath(), m.GetPropagation())
	case m.GetRecursiveReadOnly():
		return "rro", nil
	case m.GetReadonly():
		return "ro", nil
	}
	return "rw", nil
}

// checkSourcePropagation makes sure propagation can work, as containerd
// does: rshared needs a shared source mount, rslave a shared or slave one.
// Otherwise the container would silently see no mount events.
func checkSourcePropagation(src, prop string, fs HostFS) error {
	if prop == "rprivate" {
		return nil
	}
	shared, slave, err := fs.MountPropagation(src)
	if err != nil {
		return errdefs.FailedPrecondition("propagation of mount source %q: %v", src, err)
	}
	if shared || (prop == "rslave" && slave) {
		return nil
	}
	if prop == "rshared" {
		return errdefs.FailedPrecondition("mount source %q is not on a shared mount, as bidirectional propagation needs", src)
	}
	return errdefs.FailedPrecondition("mount source %q is not on a shared or slave mount, as host-to-container propagation needs", src)
}
