// Package sandbox runs pods and their containers for the CRI: pause
// sandboxes with CNI networking, and application containers in them, each
// launched through the pod's conmon-go monitor (internal/oci).
//
// Lifecycle of a pod:
//
//	RunPodSandbox   reserve name → pod files → netns → then at once:
//	                  CNI ADD  ‖  (monitor start ‖ pause rootfs) → pause container
//	                → record (Ready) once both sides are done
//	StopPodSandbox  kill containers and pause → CNI DEL → remove netns → NotReady
//	RemovePodSandbox stop → delete containers → delete pause → stop monitor
//	                → remove rootfs and files → forget the record
//
// Every create pushes undo steps on a cleanup.Stack, so a failure at any
// step leaves nothing behind (see cleanup).
//
// Lock rules: podLock(id) serialises operations on one pod and is taken
// before ctrLock(id) of any of its containers; neither is held while
// waiting on another pod. The store has its own internal lock (see state).
package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cgroupstats"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/kmutex"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// Image is a local image as containers need it.
type Image struct {
	ID storage.ImageID
	// Name is the name the image was asked for, resolved (e.g.
	// docker.io/library/busybox:1.28); reported as ContainerStatus.image.
	Name   string
	Config ocispec.ImageConfig
	// SelfConfined: the image's program installs its own seccomp filter
	// (noded's built-in pause image).
	SelfConfined bool
}

// images finds local images; the kubelet pulls before it creates.
type images interface {
	// Resolve finds a local image by name, short name, ID or digest.
	Resolve(ctx context.Context, ref string) (Image, error)
	// PauseImage returns the pod sandbox image, creating the built-in one
	// or pulling a configured one when it is missing.
	PauseImage(ctx context.Context) (Image, error)
}

// rootfs is the containers/storage side of a container: a writable layer
// on the image, mounted while the container exists.
type rootfs interface {
	CreateContainer(id storage.ContainerID, image storage.ImageID, o storage.CreateContainerOptions) (*storage.Container, error)
	Mount(id storage.ContainerID, mountLabel string) (string, error)
	Unmount(id storage.ContainerID, force bool) error
	DeleteContainer(id storage.ContainerID) error
}

// network is pod networking through CNI.
type network interface {
	Setup(ctx context.Context, pod netcni.PodNetwork) (*netcni.Result, error)
	Teardown(ctx context.Context, pod netcni.PodNetwork) error
}

// monitor is the pod's conmon-go monitor.
type monitor interface {
	StartMonitor(ctx context.Context, pod oci.PodID) error
	StopMonitor(ctx context.Context, pod oci.PodID) error
	Create(ctx context.Context, c oci.CreateRequest) (oci.State, error)
	// Run is Create and Start in one step.
	Run(ctx context.Context, c oci.CreateRequest) (oci.State, error)
	Start(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
	Kill(ctx context.Context, pod oci.PodID, id oci.ContainerID, sig syscall.Signal) error
	State(ctx context.Context, pod oci.PodID, id oci.ContainerID) (oci.State, error)
	Wait(ctx context.Context, pod oci.PodID, id oci.ContainerID) (oci.State, error)
	ExecSync(ctx context.Context, pod oci.PodID, id oci.ContainerID, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error)
	ReopenLog(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
	Delete(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
}

// gate bounds how many pod sandboxes and containers are created at once
// (internal/admit): their CPU-heavy part waits for a slot.
type gate interface {
	Enter(ctx context.Context, c admit.Class) (leave func(), err error)
}

// Options wire a Service.
type Options struct {
	Store   *state.Store
	Images  images
	Rootfs  rootfs
	Network network
	Monitor monitor
	// Starts admits creations; nil admits everything at once.
	Starts gate
	// Node is the host facts and configuration for spec generation.
	Node specgen.Node
	// PodsDir holds each pod's files and bundles: <PodsDir>/<pod id>/.
	PodsDir string
	// NetNSDir holds pinned network namespaces (a tmpfs, e.g. under /run).
	NetNSDir string
	Logger   *logrus.Entry
	// FailAfter injects a failure after a named create step (tests only).
	FailAfter failHook
}

// Service implements the pod and container RPCs.
type Service struct {
	o     Options
	log   *logrus.Entry
	names *ids.Names

	locks kmutex.KeyedMutex[string]

	cgroups cgroupstats.Reader
	cpu     cpuSamples

	// watchCtx ends the exit watchers when the service is closed.
	watchCtx    context.Context
	watchCancel context.CancelFunc
	watchers    sync.WaitGroup
}

// New returns a Service. Call Recover before serving requests.
func New(o Options) *Service {
	log := o.Logger
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		o: o, log: log.WithField("component", "sandbox"), names: ids.NewNames(),
		cgroups: cgroupstats.NewReader(), watchCtx: ctx, watchCancel: cancel,
	}
}

// Close stops the exit watchers. Containers keep running: their monitors
// are independent of noded.
func (s *Service) Close() {
	s.watchCancel()
	s.watchers.Wait()
}

// enter waits for a creation slot (see gate) and returns the function that
// gives it back.
func (s *Service) enter(ctx context.Context, c admit.Class) (leave func(), err error) {
	if s.o.Starts == nil {
		return func() {}, nil
	}
	leave, err = s.o.Starts.Enter(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("waiting for a creation slot: %w", err)
	}
	return leave, nil
}

func (s *Service) podDir(id ids.SandboxID) string { return filepath.Join(s.o.PodsDir, string(id)) }

func (s *Service) bundleDir(pod ids.SandboxID, ctr ids.ContainerID) string {
	return filepath.Join(s.podDir(pod), "containers", string(ctr))
}

// sandboxName is the unique CRI name of a pod, as the kubelet builds it.
func sandboxName(m interface {
	GetName() string
	GetNamespace() string
	GetUid() string
	GetAttempt() uint32
}) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

func (s *Service) lockPod(id ids.SandboxID) func() { return s.locks.Lock("pod/" + string(id)) }

func (s *Service) lockContainer(id ids.ContainerID) func() { return s.locks.Lock("ctr/" + string(id)) }
