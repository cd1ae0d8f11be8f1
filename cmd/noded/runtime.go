package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cdi"
	"github.com/noded-dev/noded/internal/cgwarm"
	"github.com/noded-dev/noded/internal/checkpoint"
	"github.com/noded-dev/noded/internal/config"
	nlog "github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/nri"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/podmetrics"
	"github.com/noded-dev/noded/internal/sandbox"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// startLease is how long a pod or container creation keeps its slot
// (internal/admit): one that takes longer waits for something else than
// the CPU.
const startLease = 2 * time.Second

// newRuntimeServices builds the pod, container, exec, stats and event
// services: records, the monitors, CNI and spec generation, on the image
// store and service. It recovers the state of pods that outlived a
// previous noded. The returned function stops the services' goroutines
// (exit watchers, then the monitor reaper); the monitors and containers
// keep running.
func newRuntimeServices(ctx context.Context, cfg *config.Config, log *logrus.Entry, store *storage.Store, images sandboxImages, network *netcni.Manager, rebooted bool) (*runtimeServices, func(), error) {
	records, warnings, err := state.Open(filepath.Join(cfg.StateDir, "records"))
	if err != nil {
		return nil, nil, fmt.Errorf("opening the state directory: %w", err)
	}
	for _, w := range warnings {
		log.WithError(w).Warn("skipping an unreadable record")
	}
	conmon, err := helperPath(cfg.ConmonPath, "conmon-go")
	if err != nil {
		return nil, nil, err
	}

	criu := criuPath(cfg.CriuPath, log)
	monitors, err := oci.New(oci.Options{
		ConmonPath: conmon,
		RunDir:     filepath.Join(cfg.RunDir, "oci"),
		StateDir:   filepath.Join(cfg.StateDir, "oci"),
		Logger:     log,
		CriuPath:   criu,
	})
	if err != nil {
		return nil, nil, err
	}
	// Checkpoints dump through the monitors; the archives hold the
	// writable layers' changes from storage.
	checkpoints := checkpoint.New(checkpoint.Options{
		Monitor: monitors, Layers: store.Containers(), Version: version,
		StateDir: filepath.Join(cfg.StateDir, "checkpoints"),
	})
	node, err := specgen.DetectNode()
	if err != nil {
		_ = monitors.Close()
		return nil, nil, fmt.Errorf("reading host facts: %w", err)
	}
	node.CgroupManager = cfg.CgroupManager
	node.SeccompProfileRoot = cfg.SeccompProfileRoot
	node.SeccompUnconfinedWhenEmpty = cfg.SeccompWhenEmpty == config.SeccompUnconfined
	node.UnprivilegedPorts, node.UnprivilegedICMP = true, true
	if cdiRegistry := newCDIRegistry(cfg, log); cdiRegistry != nil {
		node.CDI = cdiRegistry
	}

	starts := int(cfg.MaxParallelStarts)
	if starts == 0 {
		starts = runtime.NumCPU()
	}
	plugins, err := newNRI(cfg, log, node)
	if err != nil {
		_ = monitors.Close()
		return nil, nil, err
	}
	moves, err := cgwarm.Open()
	if err != nil {
		// Pods start all the same, each move waiting for its grace period.
		log.WithError(err).Info("cgroup moves are not warmed up ahead")
	}
	opts := sandbox.Options{
		Store:    records,
		Images:   images,
		Rootfs:   store.Containers(),
		Network:  network,
		Monitor:  monitors,
		Starts:   admit.New(starts, startLease),
		Node:     node,
		PodsDir:  filepath.Join(cfg.StateDir, "pods"),
		NetNSDir: filepath.Join(cfg.RunDir, "netns"),
		Logger:   log,
		// Only test builds (-tags failpoints) have one.
		FailAfter: failpoint(log),
		// Only test builds can shorten it.
		EventQueue:  eventQueue(log),
		Rebooted:    rebooted,
		Checkpoints: checkpoints,
	}
	if moves != nil {
		opts.Moves = moves
	}
	if plugins != nil {
		opts.NRI = plugins
	}
	svcs := sandbox.New(opts)
	svcs.Recover(ctx)
	// Pod checkpoints a kill interrupted: their paused containers run again.
	checkpoints.Recover(nlog.WithContext(ctx, log))
	// Plugins connect once the records are whole: Synchronize gives them
	// every pod and container.
	if err := plugins.Start(records, svcs.Containers); err != nil {
		svcs.Close()
		_ = monitors.Close()
		_ = moves.Close()
		return nil, nil, err
	}
	// The CRI metrics read the same records, the pods' cgroups and
	// network namespaces, and the writable layers in storage.
	// The stats RPCs read through the same collector.
	collector := podmetrics.NewCollector(podmetrics.Options{
		Records: records, Layers: store, Systemd: cfg.CgroupManager == specgen.SystemdManager,
	})
	svcs.Stats.UseCollector(collector)
	metrics := podmetrics.NewMetrics(collector)
	return &runtimeServices{Services: svcs, Metrics: metrics, Monitors: monitors}, func() {
		plugins.Stop()
		svcs.Close()
		_ = monitors.Close()
		_ = moves.Close()
	}, nil
}

// newCDIRegistry is the registry of the CDI specs in cdi-spec-dirs, nil
// when the setting is empty (CDI off). The specs are read here once, to
// log what they offer and which of them are broken, and again at each
// CreateContainer that asks for a CDI device (internal/cdi: no watcher).
func newCDIRegistry(cfg *config.Config, log *logrus.Entry) *cdi.Registry {
	if len(cfg.CDISpecDirs) == 0 {
		return nil
	}
	reg, errs := cdi.New(cfg.CDISpecDirs)
	for _, err := range errs {
		log.WithError(err).Warn("skipping a CDI spec")
	}
	log.WithFields(logrus.Fields{"dirs": cfg.CDISpecDirs, "devices": reg.Devices()}).Info("CDI devices")
	return reg
}

// newNRI is NRI as configured (nri-*), nil when nri-enable is false.
func newNRI(cfg *config.Config, log *logrus.Entry, node specgen.Node) (*nri.NRI, error) {
	if !cfg.NRIEnable {
		log.Info("NRI is off (nri-enable = false)")
		return nil, nil
	}
	o := nri.Options{
		RuntimeName: "noded", RuntimeVersion: version,
		Socket: cfg.NRIListen, PluginDir: cfg.NRIPluginDir, PluginConfigDir: cfg.NRIPluginConfigDir,
		RegistrationTimeout: cfg.NRIPluginRegistrationTimeout.Duration,
		RequestTimeout:      cfg.NRIPluginRequestTimeout.Duration,
		SwapAccounting:      node.SwapAccounting,
		Logger:              log,
	}
	if node.CDI != nil {
		o.CDI = node.CDI
	}
	return nri.New(o)
}

// runtimeServices are the pod runtime's services and the pod metrics.
type runtimeServices struct {
	*sandbox.Services
	Metrics *podmetrics.Metrics
	// Monitors is the monitor client, for its Prometheus metrics.
	Monitors *oci.Runtime
}

// helperPath is the configured path of a helper binary, or the binary of
// that name next to the noded executable.
func helperPath(configured, name string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found next to noded (%s); set its path in the configuration", name, p)
	}
	return p, nil
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
