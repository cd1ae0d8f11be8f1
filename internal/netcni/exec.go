package netcni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/noded-dev/noded/internal/log"
)

// pluginExec runs CNI plugins as libcni's default does, with two
// differences that matter when a plugin hangs:
//
//   - Each plugin runs in a process group of its own, and when the
//     request's context ends the whole group is killed. libcni's default
//     kills only the plugin: a child it left (a delegated IPAM plugin, a
//     shell script's sleep) keeps its stdout open, and the call then
//     waits for that child to end however long it takes — a RunPodSandbox
//     the kubelet gave up on holds the pod's lock for as long.
//   - Output is waited for at most waitDelay after the group was killed.
//
// A plugin's stderr goes to the request's log, not noded's own stderr.
type pluginExec struct {
	version.PluginDecoder
}

var _ invoke.Exec = &pluginExec{}

// waitDelay bounds the wait for a killed plugin's output pipes to close
// (a process in another group that inherited them, or one stuck in the
// kernel).
const waitDelay = 2 * time.Second

func (*pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	for try := 0; ; try++ {
		stdout.Reset()
		stderr.Reset()
		c := exec.CommandContext(ctx, pluginPath)
		c.Env = environ
		c.Stdin = bytes.NewReader(stdin)
		c.Stdout, c.Stderr = &stdout, &stderr
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
		c.WaitDelay = waitDelay
		err := c.Run()
		if stderr.Len() > 0 {
			log.FromContext(ctx).WithField("plugin", pluginPath).Debugf("CNI plugin stderr: %s", strings.TrimSpace(stderr.String()))
		}
		if err == nil {
			return stdout.Bytes(), nil
		}
		// A plugin binary being replaced (package upgrade): libcni's
		// default retries the same way.
		if strings.Contains(err.Error(), "text file busy") && try < 5 && ctx.Err() == nil {
			time.Sleep(time.Second)
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("CNI plugin %s: %w (%w)", pluginPath, ctx.Err(), err)
		}
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
}

// pluginError is the CNI error a failed plugin printed on stdout, or one
// made of its stderr.
func pluginError(err error, stdout, stderr []byte) error {
	e := &cnitypes.Error{}
	switch {
	case len(stdout) > 0:
		if jerr := json.Unmarshal(stdout, e); jerr != nil || e.Msg == "" {
			e.Msg = fmt.Sprintf("netplugin failed (%v) and its output is no CNI error: %q", err, bytes.TrimSpace(stdout))
		}
	case len(stderr) > 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", bytes.TrimSpace(stderr), err)
	default:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	}
	return e
}

func (*pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}
