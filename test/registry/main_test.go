package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    options
		wantErr bool
	}{
		{name: "defaults", want: options{addr: "127.0.0.1:5000", busybox: "_build/busybox/busybox"}},
		{
			name: "all flags",
			args: []string{"--addr", "127.0.0.1:0", "--busybox", "/bb", "--registries-conf", "/r.conf", "--ready-file", "/ready", "--log", "/log"},
			want: options{addr: "127.0.0.1:0", busybox: "/bb", registriesConf: "/r.conf", readyFile: "/ready", logFile: "/log"},
		},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDialAddr(t *testing.T) {
	tests := []struct {
		in   *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, "127.0.0.1:5000"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 5000}, "127.0.0.1:5000"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "127.0.0.1:80"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 80}, "[::1]:80"},
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			if got := dialAddr(tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRun drives the command as scripts do: port 0, wait for the ready
// file, pull a manifest, stop, and the ready file is gone.
func TestRun(t *testing.T) {
	bb := os.Getenv("NODED_TEST_BUSYBOX")
	if bb == "" {
		bb = filepath.Join("..", "..", "_build", "busybox", "busybox")
	}
	if _, err := os.Stat(bb); err != nil {
		t.Skipf("no static busybox at %s (run test/images/build-busybox.sh or set NODED_TEST_BUSYBOX)", bb)
	}
	dir := t.TempDir()
	o := options{
		addr:           "127.0.0.1:0",
		busybox:        bb,
		registriesConf: filepath.Join(dir, "registries.conf"),
		readyFile:      filepath.Join(dir, "ready"),
		logFile:        filepath.Join(dir, "log"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()

	addr := waitReady(t, o.readyFile, done)
	conf, err := os.ReadFile(o.registriesConf)
	if err != nil {
		t.Fatal(err)
	}
	if want := `location = "` + addr + `/registry.k8s.io"`; !strings.Contains(string(conf), want) {
		t.Errorf("registries.conf lacks %s:\n%s", want, conf)
	}
	resp, err := http.Get("http://" + addr + "/v2/registry.k8s.io/pause/manifests/3.9")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pause:3.9 manifest: %s", resp.Status)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Stat(o.readyFile); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}

func waitReady(t *testing.T, path string, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("run ended before ready: %v", err)
		default:
		}
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("not ready after 2 minutes")
	return ""
}
