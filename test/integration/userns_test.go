//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

// usernsHost is where the pod's IDs start on the host: container 0 is host
// 100000, as the kubelet would give a pod (its first 65536-ID range past
// the host's own).
const usernsHost = 100000

func usernsMapping(host uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: 65536}}
}

func podUserns(host uint32) *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD, Uids: usernsMapping(host), Gids: usernsMapping(host)}}
}

// requireIDMapMounts skips unless the kernel ID-maps mounts of dir's file
// system (mount_setattr with MOUNT_ATTR_IDMAP, as critest's check does).
func requireIDMapMounts(t *testing.T, dir string) {
	t.Helper()
	tree, err := unix.OpenTree(-1, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Skipf("open_tree %s: %v (kernel without the new mount API)", dir, err)
	}
	defer unix.Close(tree)
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsHost, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsHost, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("no user namespaces: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}); err != nil {
		t.Skipf("no ID-mapped mounts on %s: %v", dir, err)
	}
}

// usernsPod runs a pod with its own user namespace (hostUsers: false).
func (e *podEnv) usernsPod(t *testing.T, name string) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	pcfg := e.podConfig(name)
	pcfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podUserns(usernsHost)}
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, e.d.Log)
	}
	return pod.GetPodSandboxId(), pcfg
}

// usernsContainer is a container of a user namespace pod, as the kubelet
// asks for it: the pod's namespace options.
func usernsContainer(cmd []string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Command: cmd,
		Mounts:  mounts,
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: podUserns(usernsHost)}},
	}
}

func (e *podEnv) execOut(t *testing.T, ctr string, cmd ...string) string {
	t.Helper()
	resp, err := e.exec(t, ctr, 20, cmd...)
	if err != nil || resp.GetExitCode() != 0 {
		t.Fatalf("exec %q: %v, exit %d\nstdout: %s\nstderr: %s", cmd, err, resp.GetExitCode(), resp.GetStdout(), resp.GetStderr())
	}
	return strings.TrimSpace(string(resp.GetStdout()))
}

func fileOwner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// nsInode is the inode of a namespace file.
func nsInode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// ownerOfNetNS is the inode of the user namespace that owns the network
// namespace at p (NS_GET_USERNS).
func ownerOfNetNS(t *testing.T, p string) uint64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS %s: %v", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// checkMappedProcess checks from the host that pid runs as container root
// mapped to usernsHost, in a user namespace with the pod's mapping.
func checkMappedProcess(t *testing.T, what string, pid int, uid string) {
	t.Helper()
	st := procStatus(t, pid)
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != uid || f[1] != uid {
		t.Errorf("%s (pid %d) runs as host Uid %q, want %s", what, pid, st["Uid"], uid)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(b)); strings.Join(f, " ") != fmt.Sprintf("0 %d 65536", usernsHost) {
		t.Errorf("%s uid_map %q", what, b)
	}
}

// rootfsLowerdirs is the lowerdir option of the overlay mounted at the
// root of pid's mount namespace (its root file system).
func rootfsLowerdirs(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		for _, o := range strings.Split(f[len(f)-1], ",") {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				return v
			}
		}
	}
	t.Fatalf("no overlay root in /proc/%d/mountinfo", pid)
	return ""
}

// TestUserNamespacePod: a pod with hostUsers: false runs its pause and its
// containers as an unprivileged host uid that is root inside, in one user
// namespace that owns the pod's network namespace (so sysfs, /dev/mqueue
// and the pod's sysctls work); its root file systems are ID-mapped (here
// by ID-mapped image layers: the kernel mounts overlay on them), a CRI
// mount with mappings is an ID-mapped bind mount, one without a plain bind
// mount, and the pod's own files are its root's. noded's kill -9 and
// restart change none of it: a container created after it is mapped like
// the first, from the pod's record.
func TestUserNamespacePod(t *testing.T) {
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	pid := e.checkUsernsPod(t, true)
	if l := rootfsLowerdirs(t, pid); !strings.Contains(l, "/mapped/") {
		t.Errorf("the container's image layers are not ID-mapped mounts (lowerdir=%s)", l)
	}
}

// TestUserNamespacePodChownFallback: where overlay cannot be mounted on
// ID-mapped layers (kernels before 5.19; forced here with
// containers/storage's switch), containers/storage gives the pod a copy of
// the image's top layer chowned to its mappings, and the pod works the
// same.
func TestUserNamespacePodChownFallback(t *testing.T) {
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err := testenv.Start(testenv.Options{Dir: e.d.Dir, Args: e.d.Opts.Args, Env: []string{"_CONTAINERS_OVERLAY_DISABLE_IDMAP=yes"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("%v\n%s", err, d.Log)
		}
	})
	e.d = &Daemon{d}
	e.rt, e.img = e.d.Runtime(t), e.d.Images(t)
	t.Cleanup(func() { e.removeAll(t) })
	pid := e.checkUsernsPod(t, false)
	if l := rootfsLowerdirs(t, pid); strings.Contains(l, "/mapped/") {
		t.Errorf("ID-mapped layers although disabled (lowerdir=%s)", l)
	}
	b, err := os.ReadFile(filepath.Join(e.d.Dir, "root", "overlay-images", "images.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"mapped-layers"`) {
		t.Errorf("no chowned copy of an image's top layer in images.json:\n%s", b)
	}
}

// checkUsernsPod runs a user namespace pod and checks it (with restart, a
// kill -9 of noded and its restart in the middle), returning the pid of
// its first container.
func (e *podEnv) checkUsernsPod(t *testing.T, restart bool) int {
	t.Helper()
	ctx := context.Background()
	host := t.TempDir()
	mapped, plain := filepath.Join(host, "mapped"), filepath.Join(host, "plain")
	for _, d := range []string{mapped, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A plain bind mount shows host IDs: the pod's root may write only
	// where the host lets its host uid.
	if err := os.Chown(plain, usernsHost, usernsHost); err != nil {
		t.Fatal(err)
	}

	pod, pcfg := e.usernsPod(t, "userns")
	pausePID := e.pausePID(t, pod)
	checkMappedProcess(t, "pause", pausePID, "165535") // the pause image's user, 65535
	st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || st.GetStatus().GetNetwork().GetIp() == "" {
		t.Fatalf("pod status: %v %v (no IP: CNI did not attach the pause's network namespace)", st, err)
	}
	if ownerOfNetNS(t, fmt.Sprintf("/proc/%d/ns/net", pausePID)) != nsInode(t, fmt.Sprintf("/proc/%d/ns/user", pausePID)) {
		t.Errorf("the pod's network namespace is not owned by its user namespace")
	}

	ctr := e.startContainer(t, pod, pcfg, "main", usernsContainer([]string{"sleep", "3600"},
		&runtimeapi.Mount{ContainerPath: "/mapped", HostPath: mapped,
			UidMappings: usernsMapping(usernsHost), GidMappings: usernsMapping(usernsHost)},
		&runtimeapi.Mount{ContainerPath: "/plain", HostPath: plain}))
	pid := e.containerPid(t, ctr)
	checkMappedProcess(t, "container", pid, fmt.Sprint(usernsHost))
	t.Logf("host /proc/%d/status Uid: %s; Gid: %s", pid, procStatus(t, pid)["Uid"], procStatus(t, pid)["Gid"])
	if nsInode(t, fmt.Sprintf("/proc/%d/ns/user", pid)) != nsInode(t, fmt.Sprintf("/proc/%d/ns/user", pausePID)) {
		t.Errorf("the container is not in its pod's user namespace")
	}
	checkInside := func(t *testing.T, ctr string) {
		t.Helper()
		if got := e.execOut(t, ctr, "id", "-u"); got != "0" {
			t.Errorf("id -u inside: %q, want 0", got)
		}
		if got := e.execOut(t, ctr, "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(got), " ") != fmt.Sprintf("0 %d 65536", usernsHost) {
			t.Errorf("uid_map inside: %q", got)
		}
		// The image's root-owned files are the pod root's (ID-mapped
		// root file system), and so are the pod's files.
		for _, p := range []string{"/bin/busybox", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/termination-log"} {
			if got := e.execOut(t, ctr, "stat", "-c", "%u:%g", p); got != "0:0" {
				t.Errorf("owner of %s inside: %s, want 0:0", p, got)
			}
		}
		// The root may change its root file system.
		e.execOut(t, ctr, "sh", "-c", "echo x > /etc/written-by-root && rm /etc/written-by-root")
	}
	checkInside(t, ctr)

	// sysfs of the pod's network, /dev/mqueue of its IPC namespace, the
	// cgroup file system.
	if got := e.execOut(t, ctr, "ls", "/sys/class/net"); !strings.Contains(got, "eth0") {
		t.Errorf("/sys/class/net inside: %q (not the pod's network's sysfs)", got)
	}
	mounts := e.execOut(t, ctr, "cat", "/proc/self/mounts")
	for _, fs := range []string{"sysfs /sys sysfs", "mqueue /dev/mqueue mqueue", "/sys/fs/cgroup"} {
		if !strings.Contains(mounts, fs) {
			t.Errorf("no %q mount inside:\n%s", fs, mounts)
		}
	}
	e.execOut(t, ctr, "ls", "/sys/fs/cgroup/memory/")
	// The pod's sysctls are set in its network namespace by its root.
	if got := e.execOut(t, ctr, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/net/ipv4/ping_group_range"); strings.Join(strings.Fields(got), " ") != "0 0 65535" {
		t.Errorf("pod sysctls inside: %q, want 0 and 0 65535", got)
	}

	// Volumes.
	e.execOut(t, ctr, "sh", "-c", "echo m > /mapped/f && echo p > /plain/f")
	if uid, gid := fileOwner(t, filepath.Join(mapped, "f")); uid != 0 || gid != 0 {
		t.Errorf("a file the pod's root wrote through the ID-mapped mount is %d:%d on the host, want 0:0", uid, gid)
	}
	if uid, gid := fileOwner(t, filepath.Join(plain, "f")); uid != usernsHost || gid != usernsHost {
		t.Errorf("a file the pod's root wrote through a plain bind mount is %d:%d on the host, want %d:%d", uid, gid, usernsHost, usernsHost)
	}
	if got := strings.Fields(e.execOut(t, ctr, "stat", "-c", "%u", "/mapped", "/plain")); len(got) != 2 || got[0] != "0" || got[1] != "0" {
		t.Errorf("owners of /mapped and /plain inside: %q, want 0 and 0", got)
	}
	// A file written in the root file system is the host uid's in the
	// writable layer.
	e.execOut(t, ctr, "touch", "/made-by-root")
	if uid, _ := fileOwner(t, fmt.Sprintf("/proc/%d/root/made-by-root", pid)); uid != usernsHost {
		t.Errorf("a file of the pod's root in its root file system is host uid %d, want %d", uid, usernsHost)
	}

	// The termination message (the pod's file, ID-mapped) can be written.
	quitter := e.startContainer(t, pod, pcfg, "quitter", usernsContainer([]string{"sh", "-c", "echo bye > /dev/termination-log; exit 3"}))
	if qs := e.waitExited(t, quitter, 30*time.Second); qs.GetExitCode() != 3 || qs.GetMessage() != "bye\n" {
		t.Errorf("quitter exit %d, message %q; want 3, %q\n%s", qs.GetExitCode(), qs.GetMessage(), "bye\n", e.d.Log)
	}
	if !restart {
		return pid
	}

	// kill -9 and a restart: the running container keeps its mapping and
	// a new one gets the pod's from its record.
	e.d.Kill(t)
	d2 := e.d.Restart(t)
	e.d, e.rt, e.img = d2, d2.Runtime(t), d2.Images(t)
	t.Cleanup(func() { e.removeAll(t) })
	checkInside(t, ctr)
	after := e.startContainer(t, pod, pcfg, "after-restart", usernsContainer([]string{"sleep", "3600"}))
	checkMappedProcess(t, "container created after the restart", e.containerPid(t, after), fmt.Sprint(usernsHost))
	checkInside(t, after)
	return pid
}

// TestUserNamespaceHostNetwork: a user namespace pod on the host's network
// (user_namespaces_host_network) has the host's /sys, read-only, since the
// kernel refuses its root a sysfs of the host's network namespace.
func TestUserNamespaceHostNetwork(t *testing.T) {
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	ctx := context.Background()
	pcfg := e.podConfig("userns-hostnet")
	ns := podUserns(usernsHost)
	ns.Network = runtimeapi.NamespaceMode_NODE
	pcfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, e.d.Log)
	}
	pod := resp.GetPodSandboxId()
	pausePID := e.pausePID(t, pod)
	checkMappedProcess(t, "pause", pausePID, "165535")
	if nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pausePID)) != nsInode(t, "/proc/self/ns/net") {
		t.Errorf("the pause is not in the host's network namespace")
	}
	cfg := usernsContainer([]string{"sleep", "3600"})
	cfg.Linux.SecurityContext.NamespaceOptions = ns
	ctr := e.startContainer(t, pod, pcfg, "main", cfg)
	checkMappedProcess(t, "container", e.containerPid(t, ctr), fmt.Sprint(usernsHost))
	if got := e.execOut(t, ctr, "id", "-u"); got != "0" {
		t.Errorf("id -u inside: %q", got)
	}
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.execOut(t, ctr, "ls", "/sys/class/net"); !strings.Contains(got, e.bridge) && len(host) > 0 && !strings.Contains(got, host[0].Name()) {
		t.Errorf("/sys/class/net inside: %q, not the host's", got)
	}
	if r, err := e.exec(t, ctr, 10, "sh", "-c", "echo 1 > /sys/kernel/profiling"); err != nil || r.GetExitCode() == 0 {
		t.Errorf("/sys is writable inside: %v %v", r, err)
	}
}

// TestKilledUsernsCreatesLeaveNothing is TestKilledCreatesLeaveNothing for
// a user namespace pod, whose network namespace is pinned and attached
// after its pause process started: noded killed after each step of its
// RunPodSandbox and of a CreateContainer in it leaves nothing once the
// retry succeeded and the pods are removed.
func TestKilledUsernsCreatesLeaveNothing(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	e.killEachCreateStep(t, bin, e.baseline(t), []createStep{
		{"pending", false}, {"monitor", false}, {"pause-bundle", false}, {"pause", false},
		{"netns", false}, {"cni", false}, {"container-rootfs", true}, {"container-create", true},
	}, createKills{
		name: "userns-crash",
		pod: func(pcfg *runtimeapi.PodSandboxConfig) {
			pcfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podUserns(usernsHost)}
		},
		container: func(pod string, pcfg *runtimeapi.PodSandboxConfig) *runtimeapi.CreateContainerRequest {
			cfg := usernsContainer([]string{"sleep", "3600"})
			cfg.Metadata = &runtimeapi.ContainerMetadata{Name: "sleeper"}
			cfg.Image = &runtimeapi.ImageSpec{Image: busyboxImage}
			return &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg}
		},
		check: func(t *testing.T, id string, container bool) {
			if container {
				checkMappedProcess(t, "retried container", e.containerPid(t, id), fmt.Sprint(usernsHost))
			} else {
				checkMappedProcess(t, "retried pod's pause", e.pausePID(t, id), "165535")
			}
		},
	})
}

// TestUserNamespaceRefused: requests noded cannot honour are
// InvalidArgument, and nothing is left of them.
func TestUserNamespaceRefused(t *testing.T) {
	e := newPodEnv(t)
	requireIDMapMounts(t, e.d.Dir)
	baseline := e.baseline(t)
	ctx := context.Background()
	two := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}, {ContainerId: 0, HostId: 2000, Length: 100000}}
	from1 := []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}
	for _, tc := range []struct {
		desc string
		ns   *runtimeapi.NamespaceOption
	}{
		{"mode CONTAINER", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}},
		{"mode TARGET", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}}},
		{"two mappings", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: two, Gids: two}}},
		{"container ID 0 unmapped", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: from1, Gids: from1}}},
		{"host IPC", func() *runtimeapi.NamespaceOption {
			ns := podUserns(usernsHost)
			ns.Ipc = runtimeapi.NamespaceMode_NODE
			return ns
		}()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			pcfg := e.podConfig("refused")
			pcfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.ns}
			_, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RunPodSandbox: %v, want InvalidArgument", err)
			}
			t.Log(err)
		})
	}

	// A container whose user namespace is not its pod's.
	pod, pcfg := e.usernsPod(t, "userns-refused")
	for _, tc := range []struct {
		desc string
		ns   *runtimeapi.NamespaceOption
	}{
		{"the host's", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}},
		{"other mappings", podUserns(usernsHost + 65536)},
		{"mode CONTAINER", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}},
	} {
		t.Run("container with "+tc.desc, func(t *testing.T) {
			cfg := usernsContainer([]string{"true"})
			cfg.Metadata = &runtimeapi.ContainerMetadata{Name: "refused"}
			cfg.Image = &runtimeapi.ImageSpec{Image: busyboxImage}
			cfg.Linux.SecurityContext.NamespaceOptions = tc.ns
			_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("CreateContainer: %v, want InvalidArgument", err)
			}
			t.Log(err)
		})
	}
	cs, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(cs.GetContainers()) != 0 {
		t.Fatalf("containers left by refused creates: %v %v", cs, err)
	}
	e.removeAllLeaving(t, baseline)
}
