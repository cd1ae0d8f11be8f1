package specgen

import (
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestProcessArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd-arg"}}
	for _, tc := range []struct {
		desc          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
		wantErr       error
	}{
		{desc: "image entrypoint and cmd", img: img, want: []string{"/entry", "cmd-arg"}},
		{desc: "command replaces entrypoint and drops cmd", command: []string{"/bin/sh"}, img: img, want: []string{"/bin/sh"}},
		{desc: "args replace cmd only", args: []string{"x", "y"}, img: img, want: []string{"/entry", "x", "y"}},
		{desc: "command and args", command: []string{"/bin/sh"}, args: []string{"-c", "true"}, img: img, want: []string{"/bin/sh", "-c", "true"}},
		{desc: "cmd only image", img: ocispec.ImageConfig{Cmd: []string{"/bin/cmd"}}, want: []string{"/bin/cmd"}},
		{desc: "args with no entrypoint", args: []string{"/bin/true"}, img: ocispec.ImageConfig{Cmd: []string{"/bin/cmd"}}, want: []string{"/bin/true"}},
		{desc: "empty-string entrypoint resets it", img: ocispec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/bin/cmd"}}, want: []string{"/bin/cmd"}},
		{desc: "nothing at all", wantErr: errdefs.ErrInvalidArgument},
		{desc: "empty-string entrypoint alone", img: ocispec.ImageConfig{Entrypoint: []string{""}}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := processArgs(tc.command, tc.args, tc.img)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "args", got, tc.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	kv := func(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }
	for _, tc := range []struct {
		desc    string
		img     []string
		cri     []*runtimeapi.KeyValue
		tty     bool
		want    []string
		wantErr error
	}{
		{desc: "defaults only", want: []string{DefaultPathEnv, "HOSTNAME=h"}},
		{desc: "image PATH replaces the default in place",
			img:  []string{"PATH=/app/bin", "LANG=C"},
			want: []string{"PATH=/app/bin", "HOSTNAME=h", "LANG=C"}},
		{desc: "request overrides image by key",
			img:  []string{"A=1", "B=2"},
			cri:  []*runtimeapi.KeyValue{kv("B", "3"), kv("C", "4")},
			want: []string{DefaultPathEnv, "HOSTNAME=h", "A=1", "B=3", "C=4"}},
		{desc: "request value may contain =",
			cri:  []*runtimeapi.KeyValue{kv("X", "a=b")},
			want: []string{DefaultPathEnv, "HOSTNAME=h", "X=a=b"}},
		{desc: "request may set an empty value",
			img:  []string{"A=1"},
			cri:  []*runtimeapi.KeyValue{kv("A", "")},
			want: []string{DefaultPathEnv, "HOSTNAME=h", "A="}},
		{desc: "image entry without = unsets",
			img:  []string{"HOSTNAME"},
			want: []string{DefaultPathEnv}},
		{desc: "tty adds TERM",
			tty:  true,
			want: []string{DefaultPathEnv, "HOSTNAME=h", "TERM=xterm"}},
		{desc: "tty keeps the image's TERM",
			tty: true, img: []string{"TERM=vt100"},
			want: []string{DefaultPathEnv, "HOSTNAME=h", "TERM=vt100"}},
		{desc: "empty key", cri: []*runtimeapi.KeyValue{kv("", "x")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "NUL in value", cri: []*runtimeapi.KeyValue{kv("A", "x\x00y")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "NUL in key", cri: []*runtimeapi.KeyValue{kv("A\x00", "x")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "bytes that are not UTF-8", cri: []*runtimeapi.KeyValue{kv("B", "caf\xe9")}, want: []string{DefaultPathEnv, "HOSTNAME=h", "B=caf\xe9"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := processEnv(tc.img, tc.cri, "h", tc.tty)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "env", got, tc.want)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		cri, img string
		want     string
		wantErr  error
	}{
		{desc: "request wins", cri: "/work", img: "/img", want: "/work"},
		{desc: "image next", img: "/img", want: "/img"},
		{desc: "root by default", want: "/"},
		{desc: "relative is refused", cri: "work", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := workingDir(tc.cri, ocispec.ImageConfig{WorkingDir: tc.img})
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "cwd", got, tc.want)
			}
		})
	}
}

func TestStopSignal(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		cri     runtimeapi.Signal
		img     string
		want    syscall.Signal
		wantErr error
	}{
		{desc: "neither", want: 0},
		{desc: "request", cri: runtimeapi.Signal_SIGNAL_SIGINT, img: "SIGQUIT", want: syscall.SIGINT},
		{desc: "request alias SIGCLD", cri: runtimeapi.Signal_SIGNAL_SIGCLD, want: syscall.SIGCHLD},
		{desc: "request real-time", cri: runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3, want: syscall.Signal(37)},
		{desc: "request SIGRTMAX", cri: runtimeapi.Signal_SIGNAL_SIGRTMAX, want: syscall.Signal(64)},
		{desc: "request SIGRTMAX-1", cri: runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1, want: syscall.Signal(63)},
		{desc: "image full name", img: "SIGQUIT", want: syscall.SIGQUIT},
		{desc: "image short name", img: "term", want: syscall.SIGTERM},
		{desc: "image number", img: "9", want: syscall.SIGKILL},
		{desc: "image real-time", img: "SIGRTMIN+1", want: syscall.Signal(35)},
		{desc: "unknown enum", cri: runtimeapi.Signal(999), wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown name", img: "SIGNOPE", wantErr: errdefs.ErrInvalidArgument},
		{desc: "number out of range", img: "99", wantErr: errdefs.ErrInvalidArgument},
		{desc: "real-time out of range", img: "SIGRTMIN+40", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := stopSignal(tc.cri, tc.img)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "signal", got, tc.want)
			}
		})
	}
}

func TestReportedStopSignal(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		requested runtimeapi.Signal
		recorded  int
		want      runtimeapi.Signal
	}{
		{desc: "neither: SIGTERM", want: runtimeapi.Signal_SIGNAL_SIGTERM},
		{desc: "the request's, as sent", requested: runtimeapi.Signal_SIGNAL_SIGCLD, recorded: int(syscall.SIGCHLD), want: runtimeapi.Signal_SIGNAL_SIGCLD},
		{desc: "the image's", recorded: int(syscall.SIGQUIT), want: runtimeapi.Signal_SIGNAL_SIGQUIT},
		{desc: "the image's real-time", recorded: 35, want: runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1},
		{desc: "the image's SIGRTMAX-14", recorded: 50, want: runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS14},
		{desc: "the image's SIGRTMAX", recorded: 64, want: runtimeapi.Signal_SIGNAL_SIGRTMAX},
		{desc: "a number the enum cannot name", recorded: 99, want: runtimeapi.Signal_SIGNAL_SIGTERM},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			assertEqual(t, "signal", ReportedStopSignal(tc.requested, tc.recorded), tc.want)
		})
	}
}

// Every enum value names the signal StopContainer sends for it: parsing
// the enum and naming the number again gives the value back (its alias's
// canonical name for SIGCLD, SIGIOT and SIGPOLL).
func TestSignalCRIRoundTrip(t *testing.T) {
	aliases := map[runtimeapi.Signal]runtimeapi.Signal{
		runtimeapi.Signal_SIGNAL_SIGCLD:  runtimeapi.Signal_SIGNAL_SIGCHLD,
		runtimeapi.Signal_SIGNAL_SIGIOT:  runtimeapi.Signal_SIGNAL_SIGABRT,
		runtimeapi.Signal_SIGNAL_SIGPOLL: runtimeapi.Signal_SIGNAL_SIGIO,
	}
	for v, name := range runtimeapi.Signal_name {
		enum := runtimeapi.Signal(v)
		if enum == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		t.Run(name, func(t *testing.T) {
			sig, err := stopSignal(enum, "")
			if err != nil {
				t.Fatal(err)
			}
			want := enum
			if a, ok := aliases[enum]; ok {
				want = a
			}
			got, ok := signalCRI(sig)
			if !ok || got != want {
				t.Errorf("signal %d named %v (%v), want %v", sig, got, ok, want)
			}
		})
	}
}
