// Command noded-testregistry serves the offline critest images
// (test/testimages) from an in-memory registry, so critest can run against
// noded with no network.
//
// Every image is pushed under a namespaced mirror path, e.g.
// ADDR/registry.k8s.io/pause:3.9, and --registries-conf writes the
// containers-registries.conf(5) that redirects the upstream registries
// there. Once serving, it prints the address on stdout (alone on a line)
// and writes it to --ready-file; it serves until SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/noded-dev/noded/test/testimages"
)

type options struct {
	addr           string
	busybox        string
	agnhost        string
	registriesConf string
	readyFile      string
	logFile        string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("noded-testregistry", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5000", "listen address; port 0 picks a free port")
	fs.StringVar(&o.busybox, "busybox", "_build/busybox/busybox", "static busybox binary (test/images/build-busybox.sh)")
	fs.StringVar(&o.agnhost, "agnhost", os.Getenv("NODED_TESTREGISTRY_AGNHOST"),
		"static agnhost binary: also serve the Kubernetes e2e suite's images (default $NODED_TESTREGISTRY_AGNHOST; test/e2e/run.sh sets it)")
	fs.StringVar(&o.registriesConf, "registries-conf", "", "write a containers-registries.conf v2 mirroring the upstream registries here")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the serving address to this file once every image is pushed")
	fs.StringVar(&o.logFile, "log", "", "append progress and registry request logs to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "noded-testregistry:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "noded-testregistry:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	// A ready file left by an earlier run would make waiters start too soon.
	if o.readyFile != "" {
		if err := os.Remove(o.readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}

	progress := io.Writer(os.Stderr)
	var requests io.Writer
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		progress = io.MultiWriter(os.Stderr, f)
		requests = f
	}
	logger := log.New(progress, "noded-testregistry: ", log.LstdFlags)

	start := time.Now()
	var opts []testimages.Option
	if o.agnhost != "" {
		opts = append(opts, testimages.WithAgnhost(o.agnhost))
	}
	images, err := testimages.Catalog(o.busybox, opts...)
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	logger.Printf("built %d images (%d names) in %s", len(images), len(testimages.Names(images)), time.Since(start).Round(time.Millisecond))

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	addr := dialAddr(ln.Addr().(*net.TCPAddr))
	srv := &http.Server{Handler: testimages.NewRegistry(requests), ReadHeaderTimeout: 30 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer shutdown(srv, logger)

	if err := testimages.Push(ctx, addr, images); err != nil {
		return err
	}
	if o.registriesConf != "" {
		conf := testimages.RegistriesConf(addr, testimages.Registries(images))
		if o.agnhost != "" {
			conf += testimages.FakeRegistryConf()
		}
		if err := writeFileAtomic(o.registriesConf, []byte(conf)); err != nil {
			return err
		}
		logger.Printf("wrote %s", o.registriesConf)
	}
	for _, n := range testimages.Names(images) {
		logger.Printf("serving %s as %s/%s", n, addr, n)
	}
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(addr+"\n")); err != nil {
			return err
		}
		defer os.Remove(o.readyFile)
	}
	fmt.Println(addr)
	logger.Printf("ready on %s", addr)

	select {
	case <-ctx.Done():
		logger.Printf("stopping")
		return nil
	case err := <-serveErr:
		return err
	}
}

// dialAddr is the address clients should use: a wildcard listen address is
// reachable as loopback, which is also what registries.conf must name.
func dialAddr(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

func shutdown(srv *http.Server, logger *log.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Printf("shutdown: %v", err)
	}
}

// writeFileAtomic writes via a temporary file and rename, so a reader that
// polls for the file never sees it half written.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
