package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

var traceHelpers = os.Getenv("NODED_HELPER_TRACE") != ""

// helperTimeout bounds one libcontainer operation.
const helperTimeout = 2 * time.Minute

// callHelper runs one conmon-go-runtime helper; files become its fds 3,
// 4, …. The caller holds opMu (no stray is reaped meanwhile) and, once
// callHelper returned, tracks the pids the helper started: they are our
// children by then, because callHelper waits for the helper's exit.
func (m *monitor) callHelper(req *helperapi.Request, files ...*os.File) (*helperapi.Response, error) {
	t0 := time.Now()
	req.Version = helperapi.Version
	req.Root = m.root
	req.LogLevel = m.logLevel
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	defer outR.Close()
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: append([]*os.File{inR, outW, os.Stderr}, files...),
	}
	proc, err := os.StartProcess(m.runtime, []string{"conmon-go-runtime", "helper"}, attr)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return nil, fmt.Errorf("starting helper: %w", err)
	}
	tSpawn := time.Now()
	exited := make(chan struct{})
	pid := proc.Pid
	m.reaper.track(pid, func(unix.WaitStatus, bool) { close(exited) })
	_ = proc.Release()
	m.reaper.kick()

	b, _ := json.Marshal(req)
	_, _ = inW.Write(b)
	inW.Close()
	_ = outR.SetReadDeadline(time.Now().Add(helperTimeout))
	out, rerr := io.ReadAll(io.LimitReader(outR, 1<<20))
	tAnswer := time.Now()
	if rerr != nil {
		_ = m.reaper.kill(pid, unix.SIGKILL)
	}
	select {
	case <-exited:
	case <-time.After(helperTimeout):
		_ = m.reaper.kill(pid, unix.SIGKILL)
		<-exited
	}
	if traceHelpers {
		traceHelper(fmt.Sprintf("monitor-trace %s: spawn %s answer %s reaped %s\n", req.Op, tSpawn.Sub(t0), tAnswer.Sub(t0), time.Since(t0)))
	}
	if rerr != nil {
		return nil, fmt.Errorf("helper %s: %w", req.Op, rerr)
	}
	var resp helperapi.Response
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("helper %s died without an answer (see the monitor log)", req.Op)
	}
	if resp.Error != "" {
		code := resp.Code
		if code == "" {
			code = wire.CodeInternal
		}
		return &resp, errf(code, "%s", resp.Error)
	}
	return &resp, nil
}

// traceHelper appends a line to the file NODED_HELPER_TRACE names
// (profiling).
func traceHelper(line string) {
	f, err := os.OpenFile(os.Getenv("NODED_HELPER_TRACE"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	f.Close()
}
