// Package nri runs NRI (Node Resource Interface) plugins for noded through
// the library's adaptation layer (github.com/containerd/nri/pkg/adaptation):
// the socket plugins connect to, the pre-installed plugins noded starts, the
// ordering of plugins, the merging of their adjustments and the request
// timeouts are the library's. What is noded's here: the records turned into
// NRI pods and containers (convert.go), a plugin's adjustments applied to a
// container's OCI spec (adjust.go), and what plugins ask of noded on their
// own (Synchronize's snapshot, unsolicited updates and evictions).
//
// The pod and container flows (internal/sandbox) call one method per
// lifecycle event. Hooks that can refuse an operation (RunPodSandbox,
// CreateContainer, StartContainer, UpdateContainer) return the plugins'
// error; notifications (the Post* events, StopContainer, StopPodSandbox,
// RemoveContainer, RemovePodSandbox) only log it, so a broken plugin can
// fail a creation but never a stop or removal. A plugin that does not answer
// within the request timeout is disconnected by the library, and the
// operation continues without it.
package nri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// Options configure NRI.
type Options struct {
	// RuntimeName and RuntimeVersion are what plugins are told at
	// registration.
	RuntimeName, RuntimeVersion string
	// Socket is where external plugins connect (nri-listen).
	Socket string
	// PluginDir holds pre-installed plugins noded starts (nri-plugin-dir);
	// PluginConfigDir their configuration drop-ins (nri-plugin-config-dir).
	PluginDir, PluginConfigDir string
	// RegistrationTimeout and RequestTimeout bound a plugin's registration
	// and each of its answers; 0 keeps the library's defaults (5 s, 2 s).
	RegistrationTimeout, RequestTimeout time.Duration
	// CDI injects the CDI devices plugins ask for (internal/cdi); nil
	// refuses such adjustments.
	CDI cdiInjector
	// SwapAccounting: the memory cgroup can limit swap (specgen.Node).
	SwapAccounting bool
	// Logger is for the library's lines and for plugin-initiated work.
	Logger *logrus.Entry
}

// Records are the pod and container records (internal/state's Store):
// what Synchronize gives a plugin that connects.
type Records interface {
	Sandboxes() []*state.Sandbox
	Containers() []*state.Container
	Sandbox(id ids.SandboxID) (*state.Sandbox, error)
	Container(id ids.ContainerID) (*state.Container, error)
}

// Runtime is what plugins may ask of noded on their own: resource updates
// of running containers, applied as UpdateContainerResources applies the
// kubelet's (without calling the plugins again), and evictions, which stop
// the container.
type Runtime interface {
	UpdateResources(ctx context.Context, id ids.ContainerID, r *runtimeapi.LinuxContainerResources) error
	Evict(ctx context.Context, id ids.ContainerID, reason string) error
}

// NRI is the runtime side of NRI. A nil *NRI is valid and does nothing
// (nri-enable = false): every method is then a no-op.
type NRI struct {
	o       Options
	log     *logrus.Entry
	ad      *adaptation.Adaptation
	records Records
	rt      Runtime

	// stopped remembers the pods and containers whose stop the plugins
	// were told of, so that they hear of each once however many times (and
	// by whichever path: StopContainer, an exit, StopPodSandbox) noded
	// records it; forgotten at removal.
	mu      sync.Mutex
	stopped map[string]bool

	// plugins is how many plugins are connected (the library reports it
	// through its metrics hook): with none, the hooks skip building the
	// NRI view of a pod or container (bundle reads on every event).
	plugins atomic.Int64
}

// setLoggerOnce routes the library's package-level logger to noded's: it
// is process-wide in the library, so it is set once.
var setLoggerOnce sync.Once

// New prepares NRI; Start connects it to noded's records and runtime and
// opens the socket.
func New(o Options) (*NRI, error) {
	if o.Socket == "" {
		return nil, errors.New("nri: no socket path")
	}
	n := &NRI{o: o, log: log.Or(o.Logger).WithField("component", "nri"), stopped: map[string]bool{}}
	setLoggerOnce.Do(func() { nrilog.Set(libLogger{base: n.log}) })
	if o.RegistrationTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(o.RegistrationTimeout)
	}
	if o.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(o.RequestTimeout)
	}
	name := o.RuntimeName
	if name == "" {
		name = "noded"
	}
	opts := []adaptation.Option{adaptation.WithSocketPath(o.Socket), adaptation.WithMetrics(pluginCount{n})}
	if o.PluginDir != "" {
		opts = append(opts, adaptation.WithPluginPath(o.PluginDir))
	}
	if o.PluginConfigDir != "" {
		opts = append(opts, adaptation.WithPluginConfigPath(o.PluginConfigDir))
	}
	ad, err := adaptation.New(name, o.RuntimeVersion, n.synchronize, n.updateContainers, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.ad = ad
	return n, nil
}

// Start starts the pre-installed plugins and accepts external ones. Call
// it once the records are recovered and before serving the CRI.
func (n *NRI) Start(records Records, rt Runtime) error {
	if n == nil {
		return nil
	}
	n.records, n.rt = records, rt
	// The library replaces whatever is at the socket path: a runtime that
	// serves NRI there (another noded, containerd, CRI-O) would lose its
	// plugins to noded without a word.
	if conn, err := net.DialTimeout("unix", n.o.Socket, time.Second); err == nil {
		_ = conn.Close()
		return fmt.Errorf("nri-listen %s: another runtime is already serving NRI on this socket", n.o.Socket)
	}
	if err := n.ad.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	n.log.WithField("socket", n.o.Socket).Info("NRI plugins may connect")
	return nil
}

// Stop disconnects the plugins and closes the socket.
func (n *NRI) Stop() {
	if n == nil || n.ad == nil {
		return
	}
	n.ad.Stop()
}

// BlockSync keeps a plugin that connects meanwhile from being synchronized
// until unblock is called. A creation holds it from before its hook to
// after its record is written, so that a new plugin sees the pod or
// container either in its Synchronize snapshot or through the hook, never
// neither.
func (n *NRI) BlockSync() (unblock func()) {
	if n == nil {
		return func() {}
	}
	b := n.ad.BlockPluginSync()
	return b.Unblock
}

// synchronize is the adaptation's SyncFn: it runs with creations blocked
// (BlockSync), so the snapshot is whole, and hands it to the plugin.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []*adaptation.PodSandbox
	var ctrs []*adaptation.Container
	podRecs := map[ids.SandboxID]*state.Sandbox{}
	if n.records != nil {
		for _, p := range n.records.Sandboxes() {
			podRecs[p.ID] = p
			pods = append(pods, podSandbox(p))
		}
		for _, c := range n.records.Containers() {
			if _, ok := podRecs[c.SandboxID]; !ok {
				continue
			}
			ctrs = append(ctrs, container(c, nil))
		}
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	if len(updates) > 0 {
		// Not under the sync block: an update takes container locks
		// that a creation waiting for the block may hold.
		go func() { _, _ = n.updateContainers(context.WithoutCancel(ctx), updates) }()
	}
	return nil
}

// updateContainers is the adaptation's UpdateFn: unsolicited updates from a
// plugin, applied as UpdateContainerResources applies the kubelet's. It
// returns the updates that failed.
func (n *NRI) updateContainers(ctx context.Context, updates []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
	if n.rt == nil {
		return updates, errors.New("nri: runtime not started")
	}
	ctx = log.WithContext(ctx, n.log)
	var failed []*adaptation.ContainerUpdate
	var errs []error
	for _, u := range updates {
		r := criResources(u.GetLinux().GetResources())
		if r == nil {
			continue
		}
		err := n.rt.UpdateResources(ctx, ids.ContainerID(u.GetContainerId()), r)
		if err == nil {
			continue
		}
		n.log.WithError(err).WithField("container", u.GetContainerId()).Warn("NRI plugin's container update failed")
		failed = append(failed, u)
		if !u.GetIgnoreFailure() {
			errs = append(errs, fmt.Errorf("container %s: %w", u.GetContainerId(), err))
		}
	}
	return failed, errors.Join(errs...)
}

// evict stops the containers plugins asked to evict.
func (n *NRI) evict(ctx context.Context, evictions []*adaptation.ContainerEviction) {
	for _, e := range evictions {
		lg := n.log.WithFields(logrus.Fields{"container": e.GetContainerId(), "reason": e.GetReason()})
		lg.Info("NRI plugin evicts container")
		if n.rt == nil {
			continue
		}
		if err := n.rt.Evict(log.WithContext(context.WithoutCancel(ctx), lg), ids.ContainerID(e.GetContainerId()), e.GetReason()); err != nil {
			lg.WithError(err).Warn("evicting container")
		}
	}
}

// active reports whether any plugin is connected. A creation asks it under
// BlockSync, where it is exact: a plugin is counted before its
// synchronization ends.
func (n *NRI) active() bool { return n.plugins.Load() > 0 }

// pluginCount keeps NRI.plugins; the library's other metrics are not used.
type pluginCount struct{ n *NRI }

func (pluginCount) RecordPluginInvocation(string, string, error)      {}
func (pluginCount) RecordPluginLatency(string, string, time.Duration) {}
func (pluginCount) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}
func (c pluginCount) UpdatePluginCount(count int) { c.n.plugins.Store(int64(count)) }

// markStopped records that the plugins are told of key's stop and reports
// whether that is news.
func (n *NRI) markStopped(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped[key] {
		return false
	}
	n.stopped[key] = true
	return true
}

func (n *NRI) forget(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.stopped, key)
}

// libLogger sends the library's lines to the request's logger when the
// context has one, else to NRI's.
type libLogger struct{ base *logrus.Entry }

func (l libLogger) entry(ctx context.Context) *logrus.Entry {
	if ctx != nil {
		if e := log.FromContext(ctx); e != log.Or(nil) {
			return e.WithField("component", "nri")
		}
	}
	return l.base
}

func (l libLogger) Debugf(ctx context.Context, format string, args ...any) {
	l.entry(ctx).Debugf(format, args...)
}

func (l libLogger) Infof(ctx context.Context, format string, args ...any) {
	l.entry(ctx).Infof(format, args...)
}

func (l libLogger) Warnf(ctx context.Context, format string, args ...any) {
	l.entry(ctx).Warnf(format, args...)
}

func (l libLogger) Errorf(ctx context.Context, format string, args ...any) {
	l.entry(ctx).Errorf(format, args...)
}
