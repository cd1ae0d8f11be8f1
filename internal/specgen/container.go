package specgen

import (
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Generate builds the spec of an application container. Errors carry an
// errdefs class: InvalidArgument for a request noded cannot honour as
// written, FailedPrecondition or NotFound for a host that does not have
// what the request names.
func (in *Container) Generate() (*Result, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	sc := in.Config.GetLinux().GetSecurityContext()
	spec := &specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: in.RootfsPath, Readonly: sc.GetReadonlyRootfs()},
		Annotations: containerAnnotations(in),
		Linux:       &specs.Linux{},
	}
	res := &Result{Spec: spec}
	steps := []func(*Container, *Result) error{
		(*Container).process,
		(*Container).user,
		(*Container).security,
		(*Container).namespaces,
		(*Container).mounts,
		(*Container).devicesAndResources,
		(*Container).cdiDevices,
		// Last: the default seccomp profile depends on the capabilities.
		(*Container).seccomp,
	}
	for _, step := range steps {
		if err := step(in, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (in *Container) validate() error {
	switch {
	case in.ID == "":
		return errdefs.InvalidArgument("container ID is empty")
	case in.Config == nil:
		return errdefs.InvalidArgument("container config is nil")
	case in.Config.GetMetadata().GetName() == "":
		return errdefs.InvalidArgument("container config has no metadata name")
	case in.Sandbox == nil || in.Sandbox.GetMetadata() == nil:
		return errdefs.InvalidArgument("sandbox config or its metadata is missing")
	case !filepath.IsAbs(in.RootfsPath):
		return errdefs.InvalidArgument("container rootfs %q is not an absolute path", in.RootfsPath)
	}
	sc := in.Config.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() && !in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return errdefs.InvalidArgument("privileged container in a pod that is not privileged")
	}
	return nil
}

// process fills the command, environment, working directory and terminal.
// stdin needs nothing in the spec: it only changes how noded wires the
// process's I/O.
func (in *Container) process(res *Result) error {
	args, err := processArgs(in.Config.GetCommand(), in.Config.GetArgs(), in.Image)
	if err != nil {
		return err
	}
	hostname := in.Sandbox.GetHostname()
	if hostname == "" {
		hostname = in.Node.Hostname
	}
	env, err := processEnv(in.Image.Env, in.Config.GetEnvs(), hostname, in.Config.GetTty())
	if err != nil {
		return err
	}
	cwd, err := workingDir(in.Config.GetWorkingDir(), in.Image)
	if err != nil {
		return err
	}
	if res.StopSignal, err = stopSignal(in.Config.GetStopSignal(), in.Image.StopSignal); err != nil {
		return err
	}
	res.Spec.Process = &specs.Process{
		Terminal: in.Config.GetTty(),
		Args:     args,
		Env:      env,
		Cwd:      cwd,
		Rlimits:  slices.Clone(in.Node.Rlimits),
	}
	return nil
}

func (in *Container) user(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	req, err := newUserRequest(sc, sc.GetRunAsUsername(), in.Image.User)
	if err != nil {
		return err
	}
	if res.User, err = resolveUser(in.RootfsPath, req); err != nil {
		return err
	}
	userns, err := in.usernsMappings()
	if err != nil {
		return err
	}
	if err := userMapped(res.User, userns); err != nil {
		return err
	}
	res.Spec.Process.User = specs.User{UID: res.User.UID, GID: res.User.GID, AdditionalGids: res.User.AdditionalGIDs}
	return nil
}

// security fills capabilities, no_new_privs, masked and read-only paths,
// and checks AppArmor.
func (in *Container) security(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	if err := checkAppArmor(sc.GetApparmor(), sc.GetApparmorProfile()); err != nil { //nolint:staticcheck // the deprecated field is still sent by old clients
		return err
	}
	caps, err := capabilities(sc.GetCapabilities(), sc.GetPrivileged(), &in.Node)
	if err != nil {
		return err
	}
	res.Spec.Process.Capabilities = caps
	res.Spec.Process.NoNewPrivileges = sc.GetNoNewPrivs()
	res.Spec.Linux.MaskedPaths, res.Spec.Linux.ReadonlyPaths = maskedPaths(sc)
	return nil
}

func (in *Container) seccomp(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	p, err := seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged(), res.Spec, &in.Node) //nolint:staticcheck // deprecated field, old clients
	res.Spec.Linux.Seccomp = p
	return err
}

func (in *Container) namespaces(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	ownCgroupNS := in.Node.CgroupV2 && !sc.GetPrivileged()
	userns, err := in.userns()
	if err != nil {
		return err
	}
	ns, err := containerNamespaces(sc.GetNamespaceOptions(), userns, in.Namespaces, in.TargetPIDNamespace, ownCgroupNS)
	res.Spec.Linux.Namespaces = ns
	return err
}

// mounts fills the default file systems, the pod's shared files, the
// termination message file and the request's mounts.
func (in *Container) mounts(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	hostIPC := sc.GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE
	extra := append(sandboxFileMounts(in.Files, sc.GetReadonlyRootfs(), hostIPC),
		terminationMessageMount(in.TerminationMessageFile, in.Config.GetAnnotations())...)
	all := mergeMounts(in.Config.GetMounts(), extra)
	binds, rootProp, err := bindMounts(all, in.Node.fs())
	if err != nil {
		return err
	}
	hardenPodShm(all, binds, podShm(in.Files, hostIPC))
	if userns, err := in.userns(); err != nil {
		return err
	} else if userns {
		idmapPodFiles(all, binds, extra)
	}
	if err := in.imageVolumeSources(all, binds); err != nil {
		return err
	}
	var cgroupOpts []string
	if !in.Node.CgroupV2 || sc.GetPrivileged() {
		// No cgroup namespace: the mount shares the host's super block.
		cgroupOpts = in.Node.CgroupMountOptions
	}
	defaults := defaultMounts(sc.GetPrivileged(), cgroupOpts)
	if userns, _ := in.userns(); userns && sc.GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		defaults = hostSysfs(defaults)
	}
	res.Spec.Mounts = append(withoutShadowed(defaults, all), binds...)
	res.Spec.Linux.RootfsPropagation = rootProp
	return nil
}

func (in *Container) devicesAndResources(res *Result) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	r := in.Config.GetLinux().GetResources()
	if err := checkResources(r); err != nil {
		return err
	}
	nodes, rules, err := devices(in.Config.GetDevices(), sc.GetPrivileged(), in.Node.fs())
	if err != nil {
		return err
	}
	res.Spec.Linux.Devices = nodes
	res.Spec.Linux.Resources = resources(r, &in.Node)
	res.Spec.Linux.Resources.Devices = rules
	if r != nil {
		if res.Spec.Process.OOMScoreAdj, err = oomScoreAdj(r.GetOomScoreAdj(), &in.Node); err != nil {
			return err
		}
	}
	parent := in.CgroupParent
	if parent == "" {
		parent = in.Sandbox.GetLinux().GetCgroupParent()
	}
	res.Spec.Linux.CgroupsPath, err = cgroupsPath(in.Node.CgroupManager, parent, in.ID)
	return err
}
