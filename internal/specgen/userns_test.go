package specgen

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

const (
	modePOD       = runtimeapi.NamespaceMode_POD
	modeNODE      = runtimeapi.NamespaceMode_NODE
	modeCONTAINER = runtimeapi.NamespaceMode_CONTAINER
	modeTARGET    = runtimeapi.NamespaceMode_TARGET
)

func idmap(ctr, host, length uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: ctr, HostId: host, Length: length}
}

// podUserns is what the kubelet sends for hostUsers: false.
func podUserns() *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{Mode: modePOD,
		Uids: []*runtimeapi.IDMapping{idmap(0, 100000, 65536)},
		Gids: []*runtimeapi.IDMapping{idmap(0, 100000, 65536)}}
}

func TestPodUserNamespace(t *testing.T) {
	want := &IDMappings{
		UIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	withUserns := func(edit func(u *runtimeapi.UserNamespace)) *runtimeapi.NamespaceOption {
		u := podUserns()
		edit(u)
		return &runtimeapi.NamespaceOption{UsernsOptions: u}
	}
	two := []*runtimeapi.IDMapping{idmap(0, 1000, 100000), idmap(0, 2000, 100000)}
	for _, tc := range []struct {
		desc    string
		ns      *runtimeapi.NamespaceOption
		want    *IDMappings
		wantErr error
	}{
		{desc: "no options: the host's (older kubelets)"},
		{desc: "no user namespace options", ns: &runtimeapi.NamespaceOption{}},
		{desc: "mode NODE: the host's", ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: modeNODE}}},
		{desc: "mode POD with one mapping each", ns: withUserns(func(*runtimeapi.UserNamespace) {}), want: want},
		{desc: "critest's POD mapping", want: &IDMappings{
			UIDs: []specs.LinuxIDMapping{{HostID: 1000, Size: 100000}}, GIDs: []specs.LinuxIDMapping{{HostID: 1000, Size: 100000}}},
			ns: withUserns(func(u *runtimeapi.UserNamespace) {
				u.Uids, u.Gids = []*runtimeapi.IDMapping{idmap(0, 1000, 100000)}, []*runtimeapi.IDMapping{idmap(0, 1000, 100000)}
			})},
		{desc: "mode NODE with mappings", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Mode = modeNODE })},
		{desc: "mode CONTAINER", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: modeCONTAINER}}},
		{desc: "mode TARGET", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: modeTARGET}}},
		{desc: "unknown mode", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: 9}}},
		{desc: "mode POD without mappings", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: modePOD}}},
		{desc: "two uid and gid mappings", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Uids, u.Gids = two, two })},
		{desc: "two gid mappings", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Gids = two })},
		{desc: "no gid mapping", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Gids = nil })},
		{desc: "container ID 0 not mapped", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) {
				u.Uids, u.Gids = []*runtimeapi.IDMapping{idmap(1, 1000, 100000)}, []*runtimeapi.IDMapping{idmap(1, 1000, 100000)}
			})},
		{desc: "gid 0 not mapped", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Gids = []*runtimeapi.IDMapping{idmap(1, 1000, 100000)} })},
		{desc: "empty range", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Uids = []*runtimeapi.IDMapping{idmap(0, 1000, 0)} })},
		{desc: "host range past the last ID", wantErr: errdefs.ErrInvalidArgument,
			ns: withUserns(func(u *runtimeapi.UserNamespace) { u.Uids = []*runtimeapi.IDMapping{idmap(0, 4294967295-100, 65536)} })},
		{desc: "with the host's network", want: want,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: podUserns(), Network: modeNODE}},
		{desc: "with the host's IPC", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: podUserns(), Ipc: modeNODE}},
		{desc: "with the host's PID", wantErr: errdefs.ErrInvalidArgument,
			ns: &runtimeapi.NamespaceOption{UsernsOptions: podUserns(), Pid: modeNODE}},
		{desc: "host network without a user namespace is fine",
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: modeNODE}, Network: modeNODE}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.ns}}}
			got, err := PodUserNamespace(cfg)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "mappings", got, tc.want)
			}
		})
	}
}

func TestContainerUserns(t *testing.T) {
	other := podUserns()
	other.Uids = []*runtimeapi.IDMapping{idmap(0, 200000, 65536)}
	ns := func(u *runtimeapi.UserNamespace) *runtimeapi.NamespaceOption {
		return &runtimeapi.NamespaceOption{UsernsOptions: u}
	}
	for _, tc := range []struct {
		desc     string
		ctr, pod *runtimeapi.NamespaceOption
		want     bool
		wantErr  error
	}{
		{desc: "host pod, no options"},
		{desc: "host pod, NODE", ctr: ns(&runtimeapi.UserNamespace{Mode: modeNODE}), pod: ns(&runtimeapi.UserNamespace{Mode: modeNODE})},
		{desc: "the kubelet's: the pod's options", ctr: ns(podUserns()), pod: ns(podUserns()), want: true},
		{desc: "no options follow the pod", pod: ns(podUserns()), want: true},
		{desc: "NODE in a pod with its own", ctr: ns(&runtimeapi.UserNamespace{Mode: modeNODE}), pod: ns(podUserns()),
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "own in a host pod", ctr: ns(podUserns()), pod: ns(&runtimeapi.UserNamespace{Mode: modeNODE}),
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "other mappings than the pod's", ctr: ns(other), pod: ns(podUserns()), wantErr: errdefs.ErrInvalidArgument},
		{desc: "CONTAINER", ctr: ns(&runtimeapi.UserNamespace{Mode: modeCONTAINER}), pod: ns(podUserns()),
			wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := containerUserns(tc.ctr, tc.pod)
			if checkErr(t, err, tc.wantErr) && got != tc.want {
				t.Errorf("joins the pod's user namespace: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSandboxGenerateUserns(t *testing.T) {
	s := testSandbox(t)
	s.NetNS = "" // the pause process makes it, inside the user namespace
	s.Node.UnprivilegedICMP, s.Node.UnprivilegedPorts = true, true
	s.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: podUserns()}
	r, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "namespaces", r.Spec.Linux.Namespaces, []specs.LinuxNamespace{
		{Type: specs.MountNamespace}, {Type: specs.UserNamespace}, {Type: specs.NetworkNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, {Type: specs.PIDNamespace}})
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	assertEqual(t, "uid mappings", r.Spec.Linux.UIDMappings, m)
	assertEqual(t, "gid mappings", r.Spec.Linux.GIDMappings, m)
	// Every gid would be EINVAL in the pod's user namespace.
	assertEqual(t, "sysctls", r.Spec.Linux.Sysctl, map[string]string{
		sysctlUnprivilegedPortStart: "0", sysctlPingGroupRange: "0 65535"})

	s.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Mode = modeCONTAINER
	if _, err := s.Generate(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("mode CONTAINER: %v, want InvalidArgument", err)
	}
}

// With the host's network, the pod gets the host's /sys, recursively
// read-only, instead of a sysfs the kernel would refuse it.
func TestUsernsHostNetworkSysfs(t *testing.T) {
	hostSys := specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}}
	sysOf := func(ms []specs.Mount) specs.Mount {
		for _, m := range ms {
			if m.Destination == "/sys" {
				return m
			}
		}
		t.Fatalf("no /sys mount in %v", ms)
		return specs.Mount{}
	}
	for _, tc := range []struct {
		desc    string
		network runtimeapi.NamespaceMode
		userns  bool
		hostSys bool
	}{
		{"userns, host network", modeNODE, true, true},
		{"userns, pod network", modePOD, true, false},
		{"host network only", modeNODE, false, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ns := &runtimeapi.NamespaceOption{Network: tc.network}
			if tc.userns {
				ns.UsernsOptions = podUserns()
			}
			s := testSandbox(t)
			s.Config.Linux.SecurityContext.NamespaceOptions = ns
			sr, err := s.Generate()
			if err != nil {
				t.Fatal(err)
			}
			c := testContainer(t)
			c.Sandbox.Linux.SecurityContext.NamespaceOptions = ns
			c.Config.Linux.SecurityContext.NamespaceOptions = ns
			cr, err := c.Generate()
			if err != nil {
				t.Fatal(err)
			}
			for what, m := range map[string]specs.Mount{"pause": sysOf(sr.Spec.Mounts), "container": sysOf(cr.Spec.Mounts)} {
				if got := m.Type == "bind"; got != tc.hostSys {
					t.Errorf("%s /sys: %+v", what, m)
				} else if got {
					assertEqual(t, what+" /sys", m, hostSys)
				}
			}
		})
	}
}

func TestContainerGenerateUserns(t *testing.T) {
	mapped := []*runtimeapi.IDMapping{idmap(0, 100000, 65536)}
	setup := func(t *testing.T) *Container {
		c := testContainer(t)
		c.Sandbox.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: podUserns()}
		c.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: podUserns()}
		c.Files = SandboxFiles{Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Hostname: "/pod/hostname", Shm: "/pod/shm"}
		c.TerminationMessageFile = "/pod/ctr/termination-log"
		c.Config.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/mapped", HostPath: "/srv/mapped", UidMappings: mapped, GidMappings: mapped},
			{ContainerPath: "/plain", HostPath: "/srv/plain"},
		}
		return c
	}
	t.Run("joins the pod's; ID-mapped mounts", func(t *testing.T) {
		r, err := setup(t).Generate()
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, "namespaces", r.Spec.Linux.Namespaces[:2], []specs.LinuxNamespace{
			{Type: specs.MountNamespace}, {Type: specs.UserNamespace, Path: "/proc/42/ns/user"}})
		if r.Spec.Linux.UIDMappings != nil || r.Spec.Linux.GIDMappings != nil {
			t.Errorf("mappings given with a user namespace to join (runc reads them): %v %v", r.Spec.Linux.UIDMappings, r.Spec.Linux.GIDMappings)
		}
		want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		byDst := map[string]specs.Mount{}
		for _, m := range r.Spec.Mounts {
			byDst[m.Destination] = m
		}
		for _, dst := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", DefaultTerminationMessagePath} {
			if !slices.Contains(byDst[dst].Options, "idmap") {
				t.Errorf("pod file %s is not ID-mapped: %v", dst, byDst[dst].Options)
			}
		}
		for _, dst := range []string{"/dev/shm", "/plain", "/mapped"} {
			if slices.Contains(byDst[dst].Options, "idmap") {
				t.Errorf("%s has the idmap option: %v", dst, byDst[dst].Options)
			}
		}
		assertEqual(t, "/mapped uid mappings", byDst["/mapped"].UIDMappings, want)
		assertEqual(t, "/mapped gid mappings", byDst["/mapped"].GIDMappings, want)
		if byDst["/plain"].UIDMappings != nil || byDst["/plain"].GIDMappings != nil {
			t.Errorf("/plain is ID-mapped: %+v", byDst["/plain"])
		}
	})
	t.Run("no idmap option without a user namespace", func(t *testing.T) {
		c := setup(t)
		c.Sandbox.Linux.SecurityContext.NamespaceOptions = nil
		c.Config.Linux.SecurityContext.NamespaceOptions = nil
		r, err := c.Generate()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Spec.Mounts {
			if slices.Contains(m.Options, "idmap") {
				t.Errorf("%s is ID-mapped in a host user namespace pod", m.Destination)
			}
		}
		if slices.ContainsFunc(r.Spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
			t.Errorf("a user namespace: %v", r.Spec.Linux.Namespaces)
		}
	})
	for _, tc := range []struct {
		desc string
		edit func(*Container)
	}{
		{desc: "other mappings than the pod's", edit: func(c *Container) {
			c.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Gids = []*runtimeapi.IDMapping{idmap(0, 300000, 65536)}
		}},
		{desc: "mount with uid mappings only", edit: func(c *Container) { c.Config.Mounts[0].GidMappings = nil }},
		{desc: "mount with an empty range", edit: func(c *Container) {
			c.Config.Mounts[0].UidMappings = []*runtimeapi.IDMapping{idmap(0, 100000, 0)}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := setup(t)
			tc.edit(c)
			if _, err := c.Generate(); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Generate: %v, want InvalidArgument", err)
			}
			if err := CheckContainerConfig(c.Config); tc.desc != "other mappings than the pod's" && !errdefs.IsInvalidArgument(err) {
				t.Errorf("CheckContainerConfig: %v, want InvalidArgument", err)
			}
		})
	}
}

func TestPingGroupRange(t *testing.T) {
	for _, tc := range []struct {
		userns *IDMappings
		want   string
	}{
		{nil, "0 2147483647"},
		{&IDMappings{GIDs: []specs.LinuxIDMapping{{HostID: 100000, Size: 65536}}}, "0 65535"},
		{&IDMappings{GIDs: []specs.LinuxIDMapping{{HostID: 0, Size: 4294967295}}}, "0 2147483647"},
	} {
		if got := pingGroupRange(tc.userns); got != tc.want {
			t.Errorf("pingGroupRange(%v) = %q, want %q", tc.userns, got, tc.want)
		}
	}
}

// A process identity outside the pod's mappings is refused before runc
// fails on it.
func TestUsernsUnmappedUser(t *testing.T) {
	small := &runtimeapi.UserNamespace{Mode: modePOD,
		Uids: []*runtimeapi.IDMapping{idmap(0, 100000, 1000)}, Gids: []*runtimeapi.IDMapping{idmap(0, 100000, 1000)}}
	for _, tc := range []struct {
		desc    string
		edit    func(*runtimeapi.LinuxContainerSecurityContext)
		wantErr error
	}{
		{desc: "root is mapped", edit: func(*runtimeapi.LinuxContainerSecurityContext) {}},
		{desc: "uid 999 is mapped", edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: 999}
		}},
		{desc: "uid 1000 is not", wantErr: errdefs.ErrInvalidArgument, edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		}},
		{desc: "gid 5000 is not", wantErr: errdefs.ErrInvalidArgument, edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser, sc.RunAsGroup = &runtimeapi.Int64Value{Value: 1}, &runtimeapi.Int64Value{Value: 5000}
		}},
		{desc: "supplemental group 70000 is not", wantErr: errdefs.ErrInvalidArgument, edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.SupplementalGroups = []int64{70000}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := testContainer(t)
			c.Sandbox.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: small}
			c.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: small}
			tc.edit(c.Config.Linux.SecurityContext)
			_, err := c.Generate()
			checkErr(t, err, tc.wantErr)
		})
	}
	t.Run("the pause's user", func(t *testing.T) {
		s := testSandbox(t) // the pause image's user is 65535:65535
		s.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: small}
		if _, err := s.Generate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("pause user outside a 1000-ID user namespace: %v, want InvalidArgument", err)
		}
	})
}
