//go:build integration

package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestVersionAndStatus(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	ctx := context.Background()
	rt := d.Runtime(t)

	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetRuntimeName() != "noded" || v.GetRuntimeApiVersion() != "v1" || v.GetRuntimeVersion() == "" {
		t.Fatalf("Version = %+v", v)
	}
	// The kubelet shows what parses as a semantic version, else "Unknown".
	if _, err := utilversion.ParseSemantic(v.GetRuntimeVersion()); err != nil {
		t.Errorf("RuntimeVersion %q is not a semantic version: %v", v.GetRuntimeVersion(), err)
	}

	networkReady := func() *runtimeapi.RuntimeCondition {
		t.Helper()
		st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == runtimeapi.NetworkReady {
				return c
			}
		}
		t.Fatal("no NetworkReady condition")
		return nil
	}
	if c := networkReady(); c.GetStatus() || c.GetReason() == "" || !strings.Contains(c.GetMessage(), d.CNIDir) {
		t.Fatalf("NetworkReady with an empty CNI dir: %+v", c)
	}
	// A config added while running is picked up without a restart.
	conf := `{"cniVersion":"1.0.0","name":"it","plugins":[{"type":"bridge","bridge":"nodedit0","ipam":{"type":"host-local","subnet":"10.231.0.0/24"}}]}`
	if err := os.WriteFile(filepath.Join(d.CNIDir, "10-it.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !networkReady().GetStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("CNI config not picked up: %+v", networkReady())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSocket(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
	}

	t.Run("a second daemon on a live socket refuses to start", func(t *testing.T) {
		cmd := exec.Command(nodedBin(t), "--listen", d.Socket, "--config", filepath.Join(d.Dir, "noded.toml"),
			"--root", filepath.Join(d.Dir, "root2"), "--runroot", filepath.Join(d.Dir, "runroot2"), "--state-dir", filepath.Join(d.Dir, "state2"))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "another noded is already serving") {
			t.Fatalf("second daemon: err=%v output=%s", err, out)
		}
		if _, err := d.Runtime(t).Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
			t.Fatalf("first daemon stopped answering: %v", err)
		}
	})

	t.Run("a stale socket is replaced", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "noded-it-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cleanupDir(t, dir) })
		stale := filepath.Join(dir, "noded.sock")
		ln, err := net.Listen("unix", stale)
		if err != nil {
			t.Fatal(err)
		}
		// Closing a unix listener removes its file; keep the file, as a
		// crashed daemon would.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		_ = ln.Close()
		d2 := StartDaemon(t, DaemonOptions{Dir: dir})
		if _, err := d2.Runtime(t).Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}

// Every RPC of cri-api's two services is implemented (the README's CRI
// coverage lists them all): called with an empty request, none answers
// Unimplemented. Unary calls answer at once; a stream answers, ends or
// (GetContainerEvents) waits for events until the deadline.
func TestEveryRPCIsImplemented(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	conn := d.Conn()
	for _, sd := range []grpc.ServiceDesc{runtimeapi.RuntimeService_ServiceDesc, runtimeapi.ImageService_ServiceDesc} {
		for _, m := range sd.Methods {
			t.Run(m.MethodName, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := conn.Invoke(ctx, "/"+sd.ServiceName+"/"+m.MethodName, &emptypb.Empty{}, &emptypb.Empty{})
				if status.Code(err) == codes.Unimplemented {
					t.Fatalf("%s answered %v", m.MethodName, err)
				}
			})
		}
		for i := range sd.Streams {
			desc := &sd.Streams[i]
			t.Run(desc.StreamName, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				st, err := conn.NewStream(ctx, desc, "/"+sd.ServiceName+"/"+desc.StreamName)
				if err == nil {
					if err = st.SendMsg(&emptypb.Empty{}); err == nil {
						_ = st.CloseSend()
						err = st.RecvMsg(&emptypb.Empty{})
					}
				}
				if status.Code(err) == codes.Unimplemented {
					t.Fatalf("%s answered %v", desc.StreamName, err)
				}
			})
		}
	}
}

func TestGracefulStopAndMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	d := StartDaemon(t, DaemonOptions{Args: []string{"--metrics-address", addr}})
	for range 3 {
		if _, err := d.Runtime(t).Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{
		`noded_cri_requests_total{code="OK",method="Version"}`,
		`noded_cri_request_duration_seconds_bucket{method="Version"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := d.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("noded exited with %v after SIGINT\n%s", err, d.Log)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
}

func TestConfigSubcommand(t *testing.T) {
	out, err := exec.Command(nodedBin(t), "config", "--config", "/nonexistent/ok-if-default", "--log-level", "debug").CombinedOutput()
	if err == nil {
		t.Fatalf("an explicit missing --config must fail:\n%s", out)
	}
	out, err = exec.Command(nodedBin(t), "config", "--log-level", "debug", "--cni-plugin-dirs", "/a,/b").CombinedOutput()
	if err != nil {
		t.Fatalf("noded config: %v\n%s", err, out)
	}
	for _, want := range []string{`log-level = "debug"`, `cni-plugin-dirs = ["/a", "/b"]`, `listen = "/run/noded/noded.sock"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("noded config output lacks %s:\n%s", want, out)
		}
	}
}
