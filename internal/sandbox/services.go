// Package sandbox runs pods and their containers for the CRI: pause
// sandboxes with CNI networking, and application containers in them, each
// launched through the pod's conmon-go monitor (internal/oci).
//
// One service per concern, each behind its own small interface in
// internal/cri:
//
//	Pods        RunPodSandbox, StopPodSandbox, RemovePodSandbox,
//	            PodSandboxStatus, ListPodSandbox, the
//	            port-forward streams                      pods_*.go
//	Containers  CreateContainer, StartContainer, StopContainer,
//	            RemoveContainer, ContainerStatus, ListContainers,
//	            ReopenContainerLog                        containers_*.go
//	Exec        ExecSync (the streaming RPCs will join it) exec.go
//	Stats       ContainerStats, ListContainerStats        stats.go
//	Events      the exit watchers that record a container's end,
//	            and GetContainerEvents                    events.go
//	IDs         full-ID or prefix resolution, done once at the edge
//
// They share one base (records, names, locks, host and helper plumbing;
// base.go) and are built together by New.
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
// Lock rules: lockPod(id) serialises operations on one pod and is taken
// before lockContainer(id) of any of its containers; neither is held while
// waiting on another pod. Both give up when the request's context ends.
// The store has its own internal lock (see state).
package sandbox

import (
	"context"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
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
	// Rootfs is the pause image's shared, read-only root filesystem
	// (noded's built-in image), which pod sandboxes without a user
	// namespace run on instead of a storage container of their own; "".
	Rootfs string
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
	// Exec runs cmd with the client's streams as its stdio and returns
	// its exit code; Attach connects them to the container's main process.
	Exec(ctx context.Context, pod oci.PodID, id oci.ContainerID, cmd []string, stdio oci.Stdio) (int32, error)
	Attach(ctx context.Context, pod oci.PodID, id oci.ContainerID, stdio oci.Stdio) error
	ReopenLog(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
	Delete(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
	// Update applies the resources of the container's bundle to it.
	Update(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
}

// gate bounds how many pod sandboxes and containers are created at once
// (internal/admit): their CPU-heavy part waits for a slot.
type gate interface {
	Enter(ctx context.Context, c admit.Class) (leave func(), err error)
}

// host is what a pod needs from the kernel besides its containers: the
// pod's /dev/shm tmpfs and its pinned network namespace. Both need root;
// unit tests give fakes, so that the services' logic is tested by any
// user (the real thing is covered by the integration tests).
type host interface {
	MountShm(path string, size int64) error
	// UnmountShm is idempotent: a path that is not mounted is fine.
	UnmountShm(path string) error
	// NewNetNS pins a new network namespace at <dir>/<name>.
	NewNetNS(dir, name string) (string, error)
	// PinNetNS pins the network namespace of process pid there instead
	// (a pod with a user namespace, whose pause process made it).
	PinNetNS(dir, name string, pid int) (string, error)
	// RemoveNetNS is idempotent.
	RemoveNetNS(path string) error
}

// Options wire the services.
type Options struct {
	Store   *state.Store
	Images  images
	Rootfs  rootfs
	Network network
	Monitor monitor
	// Starts admits creations; nil admits everything at once.
	Starts gate
	// Host mounts and pins namespaces; nil is the real kernel (RealHost).
	Host host
	// Node is the host facts and configuration for spec generation.
	Node specgen.Node
	// PodsDir holds each pod's files and bundles: <PodsDir>/<pod id>/.
	PodsDir string
	// NetNSDir holds pinned network namespaces (a tmpfs, e.g. under /run).
	NetNSDir string
	// Logger is for work that outlives a request (exit watchers); a
	// request's own lines go to the logger in its context (internal/log).
	Logger *logrus.Entry
	// FailAfter injects a failure after a named create step (tests only).
	FailAfter failHook
	// EventQueue is how many events a GetContainerEvents subscriber may
	// have waiting (0: DefaultEventQueue).
	EventQueue int
	// NRI is told of every pod and container event (internal/nri); nil
	// is NRI off.
	NRI nriHooks
	// Rebooted says the node rebooted since the records were written
	// (internal/boot): Recover then ends every pod (recoverReboot).
	Rebooted bool
	// Checkpoints writes checkpoint archives (internal/checkpoint); nil
	// turns CheckpointContainer and restores off.
	Checkpoints checkpointer
	// Moves is told at the start of every request that will move a
	// process into a container's cgroups (internal/cgwarm); nil is none.
	Moves moveWarmer
}

// moveWarmer starts the kernel's wait for a cgroup move ahead of the
// monitor's helper (cgwarm.Warmer). Warm must not block.
type moveWarmer interface {
	Warm()
}

type noMoves struct{}

func (noMoves) Warm() {}

// Services are the pod runtime's services. They are built together
// because they share the records, the name registry and the locks.
type Services struct {
	Pods       *Pods
	Containers *Containers
	Exec       *Exec
	Stats      *Stats
	Events     *Events
	IDs        *IDs
}

// New builds the services. Call Recover before serving requests, and
// Close when done.
func New(o Options) *Services {
	if o.Host == nil {
		o.Host = RealHost{}
	}
	if o.NRI == nil {
		o.NRI = noNRI{}
	}
	if o.Moves == nil {
		o.Moves = noMoves{}
	}
	b := &base{o: o, names: ids.NewNames()}
	events := newEvents(b, log.Or(o.Logger).WithField("component", "sandbox"), o.EventQueue)
	stats := newStats(b)
	ctrs := &Containers{base: b, events: events, stats: stats}
	pods := &Pods{base: b, containers: ctrs, events: events}
	events.pods, events.containers = pods, ctrs
	return &Services{
		Pods:       pods,
		Containers: ctrs,
		Exec:       &Exec{base: b},
		Stats:      stats,
		Events:     events,
		IDs:        &IDs{store: o.Store},
	}
}

// Recover rebuilds the in-memory view after noded (re)starts, in this
// order:
//
//  1. creates that were killed half-way (pending records) are undone,
//     containers before pods, so that nothing they made is left and the
//     kubelet's retry of the same request succeeds;
//  2. every recorded name is reserved, and pods whose pause process is
//     gone are marked unknown;
//  3. containers: exits that happened while noded was away are recorded
//     (with their real exit codes, read from the monitors' state files),
//     and the containers still running are watched.
//
// The events of all this (STOPPED for the exits found) are kept for the
// GetContainerEvents subscribers that connect soon after (see Events).
func (s *Services) Recover(ctx context.Context) {
	s.Events.holdRecovery()
	defer s.Events.releaseRecovery()
	s.Containers.recoverPending(ctx)
	s.Pods.recoverPending(ctx)
	if s.Pods.o.Rebooted {
		s.recoverReboot(ctx)
	}
	s.Pods.recover(ctx)
	s.Containers.recover(ctx)
}

// Close stops the exit watchers. Containers keep running: their monitors
// are independent of noded.
func (s *Services) Close() { s.Events.Close() }
