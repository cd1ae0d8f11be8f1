// Package testenv starts real noded daemons and the offline test registry
// for integration tests and benchmarks: private directories, a socket the
// tests talk to as crictl or the kubelet would, and cleanup of everything
// started (processes by PID, mounts below the private directory).
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testimages"
)

// RepoRoot is the repository root: $NODED_REPO, else the nearest directory
// at or above the working directory holding noded's go.mod (go test runs
// in the package directory, go run where it is called; with -trimpath the
// source file's own path is not a real path).
func RepoRoot() string {
	if r := os.Getenv("NODED_REPO"); r != "" {
		return r
	}
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/noded-dev/noded\n")) {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// NodedBin is bin/noded, or $NODED_BIN.
func NodedBin() string {
	if bin := os.Getenv("NODED_BIN"); bin != "" {
		return bin
	}
	return filepath.Join(RepoRoot(), "bin", "noded")
}

// BusyboxPath is the static busybox the test images are built from.
func BusyboxPath() string {
	if bb := os.Getenv("NODED_TEST_BUSYBOX"); bb != "" {
		return bb
	}
	return filepath.Join(RepoRoot(), "_build", "busybox", "busybox")
}

// SyncBuffer collects a daemon's log.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Options tune Start.
type Options struct {
	// Dir is the private directory of every path; it must exist.
	Dir string
	// Args are extra command-line flags.
	Args []string
	// Log receives the daemon's output (nil: kept in Daemon.Log only).
	Log io.Writer
	// Bin is the noded binary (empty: NodedBin()).
	Bin string
	// Env is added to the daemon's environment.
	Env []string
}

// Daemon is one running noded.
type Daemon struct {
	Dir    string
	Socket string
	// NRISocket is the daemon's own NRI socket (nri-listen), never the
	// host's: test daemons must not collide with each other or with a
	// runtime on the host.
	NRISocket string
	CNIDir    string
	Log       *SyncBuffer
	Opts      Options
	Cmd       *exec.Cmd
	done      chan error
	conn      *grpc.ClientConn
}

// Start runs noded on private directories below o.Dir and waits (at most
// 30 s) until its socket answers Version.
func Start(o Options) (*Daemon, error) {
	d := &Daemon{Opts: o, Dir: o.Dir, Socket: filepath.Join(o.Dir, "noded.sock"), NRISocket: filepath.Join(o.Dir, "nri.sock"), CNIDir: filepath.Join(o.Dir, "cni"), Log: &SyncBuffer{}}
	for _, sub := range []string{d.CNIDir, filepath.Join(o.Dir, "noded.toml.d")} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
	}
	// An empty private config, so the host's /etc/noded never leaks in.
	conf := filepath.Join(o.Dir, "noded.toml")
	if _, err := os.Stat(conf); os.IsNotExist(err) {
		if err := os.WriteFile(conf, nil, 0o644); err != nil {
			return nil, err
		}
	}
	args := append([]string{
		"--config", conf,
		"--config-dir", filepath.Join(o.Dir, "noded.toml.d"),
		"--listen", d.Socket,
		"--root", filepath.Join(o.Dir, "root"),
		"--runroot", filepath.Join(o.Dir, "runroot"),
		"--state-dir", filepath.Join(o.Dir, "state"),
		"--run-dir", filepath.Join(o.Dir, "run"),
		"--cni-config-dir", d.CNIDir,
		// Tests write the network they need; one that wants noded's
		// default network turns this on in Args.
		"--cni-default-network", "false",
		"--nri-listen", d.NRISocket,
		"--nri-plugin-dir", filepath.Join(o.Dir, "nri", "plugins"),
		"--nri-plugin-config-dir", filepath.Join(o.Dir, "nri", "conf.d"),
		"--log-level", "debug",
	}, o.Args...)
	bin := o.Bin
	if bin == "" {
		bin = NodedBin()
	}
	d.Cmd = exec.Command(bin, args...)
	d.Cmd.Env = append(os.Environ(), o.Env...)
	var out io.Writer = d.Log
	if o.Log != nil {
		out = io.MultiWriter(d.Log, o.Log)
	}
	d.Cmd.Stdout, d.Cmd.Stderr = out, out
	if err := d.Cmd.Start(); err != nil {
		return nil, err
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.Cmd.Wait() }()
	// 16 MiB messages, as the kubelet's client takes.
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		d.Kill()
		return nil, err
	}
	d.conn = conn

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := d.Runtime().Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
			return d, nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			_ = conn.Close()
			return nil, fmt.Errorf("noded exited during start-up: %w\n%s", err, d.Log)
		case <-ctx.Done():
			d.Kill()
			return nil, fmt.Errorf("noded did not answer within 30s\n%s", d.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Conn is the client connection on the daemon's socket.
func (d *Daemon) Conn() *grpc.ClientConn { return d.conn }

// Runtime is a RuntimeService client on the daemon's socket.
func (d *Daemon) Runtime() runtimeapi.RuntimeServiceClient {
	return runtimeapi.NewRuntimeServiceClient(d.conn)
}

// Images is an ImageService client on the daemon's socket.
func (d *Daemon) Images() runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(d.conn)
}

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 20 s, then SIGKILL. It reports
// whether the daemon stopped by itself. Safe to call twice.
func (d *Daemon) Stop() error {
	if d.done == nil {
		return nil
	}
	defer d.closeConn()
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done: //nolint:errcheck // Stop reports whether the daemon stopped by itself, not its exit status
		d.done = nil
		return nil
	case <-time.After(20 * time.Second):
		d.Kill()
		return errors.New("noded did not stop on SIGTERM within 20s")
	}
}

// Kill sends SIGKILL (crash simulation) and waits for the exit.
func (d *Daemon) Kill() {
	if d.done == nil {
		return
	}
	_ = d.Cmd.Process.Kill()
	<-d.done //nolint:errcheck // only reaps the process: after the SIGKILL, Wait fails by design
	d.done = nil
	d.closeConn()
}

// Wait returns the daemon's exit error, or an error after timeout.
func (d *Daemon) Wait(timeout time.Duration) error {
	select {
	case err := <-d.done:
		d.done = nil
		d.closeConn()
		return err
	case <-time.After(timeout):
		return fmt.Errorf("noded still running after %s", timeout)
	}
}

func (d *Daemon) closeConn() {
	if d.conn != nil {
		_ = d.conn.Close()
	}
}

// Restart starts a new daemon with the same directories and flags.
func (d *Daemon) Restart() (*Daemon, error) { return Start(d.Opts) }

// Registry is the offline test catalog served on 127.0.0.1.
type Registry struct {
	Addr           string
	RegistriesConf string
	srv            *http.Server
}

// ErrNoBusybox means the static busybox has not been built.
var ErrNoBusybox = errors.New("static busybox not built: run test/images/build-busybox.sh")

// StartRegistry builds the catalog and serves it; the registries.conf that
// mirrors the upstream names to it is written into dir.
func StartRegistry(dir string) (*Registry, error) {
	if _, err := os.Stat(BusyboxPath()); err != nil {
		return nil, ErrNoBusybox
	}
	images, err := testimages.Catalog(BusyboxPath())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{Addr: ln.Addr().String(), srv: &http.Server{Handler: testimages.NewRegistry(io.Discard), ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = r.srv.Serve(ln) }()
	if err := testimages.Push(context.Background(), r.Addr, images); err != nil {
		r.Close()
		return nil, err
	}
	r.RegistriesConf = filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(r.RegistriesConf, []byte(testimages.RegistriesConf(r.Addr, testimages.Registries(images))), 0o644); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() { _ = r.srv.Close() }

// CleanupDir unmounts everything below dir, deepest first, and removes it.
func CleanupDir(dir string) error {
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var below []string
	for _, line := range bytes.Split(mounts, []byte("\n")) {
		fields := bytes.Fields(line)
		if len(fields) > 4 {
			if mp := string(fields[4]); mp == dir || (len(mp) > len(dir) && mp[:len(dir)+1] == dir+"/") {
				below = append(below, mp)
			}
		}
	}
	for i := len(below) - 1; i >= 0; i-- {
		_ = syscall.Unmount(below[i], syscall.MNT_DETACH)
	}
	return os.RemoveAll(dir)
}

// BridgeConf is a CNI conflist for a bridge network of its own (bridge
// name and subnet chosen by the caller), with host-local IPAM keeping its
// state below ipamDir, and portmap for hostPorts.
func BridgeConf(network, bridge, subnet, ipamDir string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"hairpinMode":true,
 "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
{"type":"portmap","capabilities":{"portMappings":true}}]}`, network, bridge, subnet, ipamDir)
}

// InsecurePolicy is a containers-policy.json accepting any image, for the
// unsigned test images.
const InsecurePolicy = `{"default":[{"type":"insecureAcceptAnything"}]}`

// RemoveCgroupTree removes the cgroup directory name (e.g. "noded-it"), the
// pod parent a test or benchmark gave its pods, with everything below it,
// from every hierarchy under /sys/fs/cgroup. noded leaves pod parents in
// place, as the kubelet owns them on a real node. Busy cgroups stay and
// are reported.
func RemoveCgroupTree(name string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if direct := filepath.Join("/sys/fs/cgroup", name); dirExists(direct) {
		roots = append(roots, direct) // cgroup v2 unified mount
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // children before parents
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
