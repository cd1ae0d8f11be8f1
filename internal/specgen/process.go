package specgen

import (
	"bytes"
	"strconv"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// DefaultPathEnv is the PATH entry of a process whose image sets none (the value
// Docker and containerd use).
const DefaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processArgs merges the request's command and args with the image's
// Entrypoint and Cmd as Kubernetes defines it: a command replaces the
// entrypoint and drops the image's Cmd; args replace Cmd alone.
func processArgs(command, args []string, img ocispec.ImageConfig) ([]string, error) {
	if len(command) == 0 {
		if len(args) == 0 {
			args = img.Cmd
		}
		// ENTRYPOINT [""] is Docker's way of resetting an inherited
		// entrypoint, not a command named "".
		if len(img.Entrypoint) != 1 || img.Entrypoint[0] != "" {
			command = img.Entrypoint
		}
	}
	out := append(append([]string{}, command...), args...)
	if len(out) == 0 {
		return nil, errdefs.InvalidArgument("no command specified: the request and the image give neither command nor args")
	}
	return out, nil
}

// processEnv builds the environment: PATH and HOSTNAME first so the image
// can override them, then the image's variables, then the request's, each
// replacing an earlier value of the same key.
func processEnv(img []string, cri []*runtimeapi.KeyValue, hostname string, tty bool) ([]string, error) {
	env := []string{DefaultPathEnv, "HOSTNAME=" + hostname}
	env = mergeEnv(env, img)
	kvs := make([]string, 0, len(cri))
	for _, kv := range cri {
		if kv.GetKey() == "" {
			return nil, errdefs.InvalidArgument("environment variable with an empty name")
		}
		// A NUL cannot be in an environment string (execve ends it
		// there); runc would fail the start instead of the create.
		if strings.IndexByte(kv.GetKey(), 0) >= 0 || bytes.IndexByte(kv.GetValue(), 0) >= 0 {
			return nil, errdefs.InvalidArgument("environment variable %q holds a NUL byte", strings.ToValidUTF8(kv.GetKey(), "?"))
		}
		// The value is bytes since cri-api v0.36.2 and need not be UTF-8.
		// It is passed on as it is; the OCI spec and libcontainer carry
		// it as a JSON string, which replaces each invalid byte with
		// U+FFFD, as it does under runc, containerd and CRI-O.
		kvs = append(kvs, kv.GetKey()+"="+string(kv.GetValue()))
	}
	env = mergeEnv(env, kvs)
	// A terminal needs TERM to be useful; containerd sets the same.
	if tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	return env, nil
}

// mergeEnv returns base with each override replacing the entry of the same
// key, or appended. An override without "=" (only the image can have one)
// removes the key, as in Docker.
func mergeEnv(base, overrides []string) []string {
	out := append([]string{}, base...)
	index := make(map[string]int, len(out))
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, o := range overrides {
		k, _, set := strings.Cut(o, "=")
		i, seen := index[k]
		switch {
		case !set && seen:
			out[i] = ""
		case !set:
		case seen:
			out[i] = o
		default:
			index[k] = len(out)
			out = append(out, o)
		}
	}
	kept := out[:0]
	for _, e := range out {
		if e != "" {
			kept = append(kept, e)
		}
	}
	return kept
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// workingDir picks the request's directory, else the image's, else "/".
func workingDir(cri string, img ocispec.ImageConfig) (string, error) {
	dir := cri
	if dir == "" {
		dir = img.WorkingDir
	}
	if dir == "" {
		return "/", nil
	}
	if !strings.HasPrefix(dir, "/") {
		return "", errdefs.InvalidArgument("working directory %q is not absolute", dir)
	}
	return dir, nil
}

// stopSignal returns the request's stop signal, else the image's, else 0.
func stopSignal(cri runtimeapi.Signal, img string) (syscall.Signal, error) {
	if cri != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		name, ok := runtimeapi.Signal_name[int32(cri)]
		if !ok {
			return 0, errdefs.InvalidArgument("unknown stop signal %d", cri)
		}
		// cri-api v0.37 prefixes the enum names: SIGNAL_SIGTERM.
		return parseSignal(strings.TrimPrefix(name, "SIGNAL_"))
	}
	if img == "" {
		return 0, nil
	}
	return parseSignal(img)
}

// Real-time signal bounds as the kernel numbers them (glibc's SIGRTMIN is
// 34 or 35 depending on the threads it reserves; Docker and runc use 34).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// parseSignal accepts the forms an image's StopSignal takes ("SIGTERM",
// "TERM", "15", "SIGRTMIN+1") and the CRI enum's names ("SIGRTMINPLUS1").
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > sigRTMax {
			return 0, errdefs.InvalidArgument("stop signal %q out of range", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if sig, ok := signalAliases[name]; ok {
		return sig, nil
	}
	if sig, ok := realtimeSignal(name); ok {
		return sig, nil
	}
	return 0, errdefs.InvalidArgument("unknown stop signal %q", s)
}

// signalAliases are names the CRI enum lists that SignalNum does not know.
var signalAliases = map[string]syscall.Signal{
	"SIGCLD":  unix.SIGCHLD,
	"SIGPOLL": unix.SIGIO,
	"SIGIOT":  unix.SIGABRT,
}

// realtimeSignal parses SIGRTMIN, SIGRTMAX, SIGRTMIN+n / SIGRTMINPLUSn and
// SIGRTMAX-n / SIGRTMAXMINUSn.
func realtimeSignal(name string) (syscall.Signal, bool) {
	name = strings.NewReplacer("PLUS", "+", "MINUS", "-").Replace(name)
	base, sign := sigRTMin, 1
	rest, ok := strings.CutPrefix(name, "SIGRTMIN")
	if !ok {
		if rest, ok = strings.CutPrefix(name, "SIGRTMAX"); !ok {
			return 0, false
		}
		base, sign = sigRTMax, -1
	}
	if rest == "" {
		return syscall.Signal(base), true
	}
	if (sign > 0 && rest[0] != '+') || (sign < 0 && rest[0] != '-') {
		return 0, false
	}
	n, err := strconv.Atoi(rest[1:])
	if err != nil || n < 0 || n > sigRTMax-sigRTMin {
		return 0, false
	}
	return syscall.Signal(base + sign*n), true
}

// ReportedStopSignal is the stop signal ContainerStatus reports (KEP-4960),
// as containerd 2 does: the request's enum as it was sent, else the
// signal the container got from its image (recorded, a signal number),
// else SIGTERM, which StopContainer then sends.
func ReportedStopSignal(requested runtimeapi.Signal, recorded int) runtimeapi.Signal {
	if requested != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return requested
	}
	if recorded > 0 {
		if s, ok := signalCRI(syscall.Signal(recorded)); ok {
			return s
		}
	}
	return runtimeapi.Signal_SIGNAL_SIGTERM
}

// signalCRI names a signal number in the CRI enum: SIGNAL_ and the
// kernel's name, the real-time signals as SIGRTMIN, SIGRTMINPLUSn (up to
// 15), SIGRTMAXMINUSn and SIGRTMAX, with the numbering parseSignal uses.
func signalCRI(sig syscall.Signal) (runtimeapi.Signal, bool) {
	n := int(sig)
	name := unix.SignalName(sig)
	switch {
	case n == sigRTMin:
		name = "SIGRTMIN"
	case n > sigRTMin && n <= sigRTMin+15:
		name = "SIGRTMINPLUS" + strconv.Itoa(n-sigRTMin)
	case n > sigRTMin+15 && n < sigRTMax:
		name = "SIGRTMAXMINUS" + strconv.Itoa(sigRTMax-n)
	case n == sigRTMax:
		name = "SIGRTMAX"
	}
	v, ok := runtimeapi.Signal_value["SIGNAL_"+name]
	return runtimeapi.Signal(v), ok && name != ""
}
