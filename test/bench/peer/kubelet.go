package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is one pod as the kubelet asks for it: the sandbox config it sends
// (metadata, hostname, log directory, DNS, labels and annotations, the pod
// cgroup parent of a BestEffort pod, the security context with the pod's
// namespaces), and the files it bind-mounts into every container
// (/etc/hosts, the termination log), made before the timed calls as the
// kubelet makes them before it calls the runtime.
type Pod struct {
	Config  *runtimeapi.PodSandboxConfig
	dir     string
	counter int
}

// NewPod prepares pod name of namespace "bench" for runtime r: its cgroup
// parent is /<r.Cgroup>/pod<uid>, its log directory and mounted files are
// below dir.
func NewPod(r *Runtime, dir, name string) (*Pod, error) {
	uid := fmt.Sprintf("%08x-bench-%d", time.Now().UnixNano()&0xffffffff, os.Getpid())
	ns := "bench"
	p := &Pod{dir: filepath.Join(dir, "pods", uid)}
	p.Config = &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(dir, "log", ns+"_"+name+"_"+uid),
		DnsConfig: &runtimeapi.DNSConfig{
			Servers:  []string{"10.96.0.10"},
			Searches: []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5"},
		},
		Labels: map[string]string{
			"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid,
		},
		Annotations: map[string]string{
			"kubernetes.io/config.seen": time.Now().Format(time.RFC3339Nano), "kubernetes.io/config.source": "api",
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/" + r.Cgroup + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
				Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			},
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 2},
		},
	}
	if err := os.MkdirAll(p.Config.LogDirectory, 0o755); err != nil {
		return nil, err
	}
	hosts := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	return p, os.WriteFile(filepath.Join(p.dir, "etc-hosts"), []byte(hosts), 0o644)
}

// Container is the container config the kubelet sends for a BestEffort
// container named name running cmd from image (default confinement:
// --seccomp-default=false, the default masked and read-only paths), with
// its log directory and termination-log file made.
func (p *Pod) Container(name, image string, cmd []string) (*runtimeapi.ContainerConfig, error) {
	p.counter++
	if err := os.MkdirAll(filepath.Join(p.Config.LogDirectory, name), 0o755); err != nil {
		return nil, err
	}
	term := filepath.Join(p.dir, "containers", name, strconv.Itoa(p.counter))
	if err := os.MkdirAll(filepath.Dir(term), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(term, nil, 0o644); err != nil {
		return nil, err
	}
	md := p.Config.GetMetadata()
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: image},
		Command:  cmd,
		Envs: []*runtimeapi.KeyValue{
			{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "KUBERNETES_SERVICE_PORT", Value: []byte("443")},
			{Key: "KUBERNETES_PORT", Value: []byte("tcp://10.96.0.1:443")},
		},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/etc/hosts", HostPath: filepath.Join(p.dir, "etc-hosts")},
			{ContainerPath: "/dev/termination-log", HostPath: term},
		},
		Labels: map[string]string{
			"io.kubernetes.container.name": name, "io.kubernetes.pod.name": md.GetName(),
			"io.kubernetes.pod.namespace": md.GetNamespace(), "io.kubernetes.pod.uid": md.GetUid(),
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash": "1f2e3d4c", "io.kubernetes.container.restartCount": "0",
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		LogPath: filepath.Join(name, "0.log"),
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: ns,
				Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
				MaskedPaths: []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
					"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			},
		},
	}, nil
}

// Times are the three calls of one pod start.
type Times struct{ Run, Create, Start, Total time.Duration }

// StartPod runs the kubelet's three calls for a pod with one container
// running cmd from image: RunPodSandbox, CreateContainer, StartContainer.
func StartPod(ctx context.Context, r *Runtime, dir, name, image string, cmd []string) (Times, string, error) {
	var t Times
	p, err := NewPod(r, dir, name)
	if err != nil {
		return t, "", err
	}
	cc, err := p.Container("app", image, cmd)
	if err != nil {
		return t, "", err
	}
	t0 := time.Now()
	pod, err := r.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.Config})
	if err != nil {
		return t, "", fmt.Errorf("%s RunPodSandbox: %w", r.Name, err)
	}
	t1 := time.Now()
	c, err := r.RT.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.GetPodSandboxId(), Config: cc, SandboxConfig: p.Config})
	if err != nil {
		return t, "", fmt.Errorf("%s CreateContainer: %w", r.Name, err)
	}
	t2 := time.Now()
	if _, err := r.RT.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		return t, "", fmt.Errorf("%s StartContainer: %w", r.Name, err)
	}
	t3 := time.Now()
	t = Times{Run: t1.Sub(t0), Create: t2.Sub(t1), Start: t3.Sub(t2), Total: t3.Sub(t0)}
	return t, c.GetContainerId(), nil
}

// PullImage pulls ref as the kubelet does (with the pod's sandbox config
// absent: a pre-pull).
func PullImage(ctx context.Context, r *Runtime, ref string) error {
	_, err := r.Img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("%s: pull %s: %w", r.Name, ref, err)
	}
	return nil
}
