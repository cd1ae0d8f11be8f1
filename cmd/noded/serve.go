package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/boot"
	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/cri"
	nlog "github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/memtrim"
	"github.com/noded-dev/noded/internal/metrics"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/sandbox"
	"github.com/noded-dev/noded/internal/streaming"
	"github.com/noded-dev/noded/internal/tracing"
)

// socketMode lets root and the socket's group (e.g. a crictl group) connect.
const socketMode = 0o660

// serve wires the daemon together and runs it until SIGTERM or SIGINT;
// SIGHUP reloads the configuration through load (reload.go).
func serve(cfg *config.Config, log *logrus.Entry, load func() (*config.Config, error)) error {
	reg := metrics.New()

	// How the last run ended: a power loss gets the store checked, a
	// reboot every pod ended (internal/boot).
	start, err := boot.Detect(cfg.StateDir, cfg.RunDir)
	if err != nil {
		return err
	}
	if start.PowerLoss() {
		log.Warn("the last run of noded did not stop cleanly and the node rebooted since: checking the image store")
	}
	if start.Rebooted {
		log.WithField("why", start.Why).Warn("the node rebooted since the last run: every pod it had is ended")
	}
	stoppedCleanly := false
	defer func() {
		// Last: after every deferred close, so the records are whole.
		if stoppedCleanly {
			if err := start.CleanShutdown(); err != nil {
				log.WithError(err).Warn("writing the clean-shutdown marker")
			}
		}
	}()

	// The memory of a burst of pulls, pod starts and stops goes back to
	// the kernel once it is over: one trimmer for the image service and
	// the lifecycle calls, so that overlapping bursts release once.
	trim := memtrim.New()
	defer trim.Close()
	images, closeImages, err := newImageService(cfg, log, reg, start.PowerLoss(), trim)
	if err != nil {
		return err
	}
	defer closeImages()

	logDefaultNetwork(cfg, log)
	network, err := netcni.New(netcni.Options{
		ConfDir:    cfg.CNIConfigDir,
		PluginDirs: cfg.CNIPluginDirs,
		// Kept with noded's state so teardown after a restart finds what
		// ADD returned.
		CacheDir: filepath.Join(cfg.StateDir, "cni"),
		Logger:   log.WithField("component", "cni"),
	})
	if err != nil {
		return err
	}

	podImgs, err := newPodImages(cfg, images)
	if err != nil {
		return err
	}
	rt, closeRuntime, err := newRuntimeServices(nlog.WithContext(context.Background(), log), cfg, log, images.Store(), podImgs, network, start.Rebooted)
	if err != nil {
		return err
	}
	defer closeRuntime()
	// Recovery is done: from here a crash is an unclean end again.
	if err := start.Started(); err != nil {
		return err
	}
	if err := reg.Register(append(network.Collectors(), rt.Monitors.Collectors()...)...); err != nil {
		return fmt.Errorf("registering CNI and monitor metrics: %w", err)
	}

	streams, err := streaming.New(streaming.Options{
		Address: cfg.StreamAddress, Port: int(cfg.StreamPort), IdleTimeout: cfg.StreamIdleTimeout.Duration,
		TLSCert: cfg.StreamTLSCert, TLSKey: cfg.StreamTLSKey, TLSCA: cfg.StreamTLSCA,
		Containers: rt.Exec, Pods: rt.Pods, Logger: log.WithField("component", "streaming"),
	})
	if err != nil {
		return err
	}
	// Deferred after closeRuntime, so it runs first: open sessions end
	// before the services they use.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = streams.Close(ctx)
	}()
	go func() {
		if err := streams.Serve(); err != nil {
			log.WithError(err).Error("streaming server stopped")
		}
	}()
	log.WithField("address", streams.Addr().String()).Info("serving CRI streams (exec, attach, port-forward)")

	srv := cri.NewServer(cri.Options{
		Version:    version,
		Network:    network,
		Images:     images,
		Pods:       rt.Pods,
		Containers: rt.Containers,
		Exec:       rt.Exec,
		Stats:      rt.Stats,
		PodStats:   rt.Stats,
		IDs:        rt.IDs,
		Metrics:    rt.Metrics,
		Streams:    streams,
		Events:     rt.Events,
		// CheckpointContainer; restores go through CreateContainer.
		Checkpoints:    rt.Containers,
		PodCheckpoints: rt.Pods,
		PodRestores:    rt.Pods,
		Handlers:       sandbox.Handlers,
		// mount_setattr(2) with AT_RECURSIVE, which runc uses for rro.
		RecursiveReadOnlyMounts: kernelAtLeast(5, 12),
		CgroupDriver:            cfg.CgroupManager,
	})

	tracer, err := tracing.New(tracing.Options{
		Endpoint: cfg.TracingEndpoint, SamplingPerMillion: int(cfg.TracingSamplingRatePerMillion), Version: version,
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(ctx); err != nil {
			log.WithError(err).Warn("sending the last spans")
		}
	}()
	serverOpts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(cri.UnaryInterceptor(log, reg), cri.TrimInterceptor(trim)),
		grpc.ChainStreamInterceptor(cri.StreamInterceptor(log, reg)),
		grpc.StatsHandler(cri.CallEnd{}),
	}
	if h := tracer.ServerHandler(); h != nil {
		// A span per request, continuing the kubelet's trace when it sends one.
		serverOpts = append(serverOpts, grpc.StatsHandler(h))
		log.WithFields(logrus.Fields{"endpoint": cfg.TracingEndpoint, "per_million": cfg.TracingSamplingRatePerMillion}).Info("tracing CRI requests (OTLP/gRPC)")
	}
	grpcServer := grpc.NewServer(serverOpts...)
	runtimeapi.RegisterRuntimeServiceServer(grpcServer, srv.RuntimeServer)
	runtimeapi.RegisterImageServiceServer(grpcServer, srv.ImageServer)

	ln, err := listenUnix(cfg.Listen)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(cfg.Listen) }()

	var metricsSrv *metrics.Server
	if cfg.MetricsAddress != "" {
		if metricsSrv, err = reg.Listen(cfg.MetricsAddress); err != nil {
			_ = ln.Close()
			return fmt.Errorf("metrics-address %s: %w", cfg.MetricsAddress, err)
		}
		go func() {
			if err := metricsSrv.Serve(); err != nil {
				log.WithError(err).Error("metrics server stopped")
			}
		}()
		log.WithField("address", metricsSrv.Addr().String()).Info("serving Prometheus metrics on /metrics")
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- grpcServer.Serve(ln) }()
	log.WithFields(logrus.Fields{"socket": cfg.Listen, "version": version}).Info("noded is serving the CRI")
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.WithError(err).Warn("sd_notify READY failed")
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	reload := &reloader{load: load, running: cfg, logger: log.Logger, images: images, pause: podImgs, network: network}

	for stop := false; !stop; {
		select {
		case err := <-serveErr:
			return fmt.Errorf("gRPC server: %w", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
				reload.reload(log.WithField("signal", sig.String()))
				_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
				continue
			}
			log.WithField("signal", sig.String()).Info("shutting down")
			stop = true
		}
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	// Event streams never end by themselves: end them, or the graceful
	// stop would wait its whole timeout for them.
	rt.Events.EndStreams()
	stopGracefully(grpcServer, cfg.ShutdownTimeout.Duration, log)
	stoppedCleanly = true
	if metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metricsSrv.Shutdown(ctx)
	}
	return nil
}

// stopGracefully stops accepting requests and lets in-flight ones finish,
// cutting them off after timeout so a hung pull cannot block a restart.
func stopGracefully(s *grpc.Server, timeout time.Duration, log *logrus.Entry) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		log.WithField("timeout", timeout).Warn("in-flight requests did not finish in time; closing them")
		s.Stop()
		<-done
	}
}

// listenUnix binds the CRI socket. A socket file left by a dead noded is
// replaced; a socket that a live process still answers on is not touched,
// so two daemons never share one node.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = conn.Close()
			return nil, fmt.Errorf("listen %s: another noded is already serving on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// Create the socket with no group/other access at all, then open it up
	// to the intended mode, so there is no window with a wider mode.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}
