package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a container and returns its output. A
// command still running at the timeout is killed and the RPC answers
// DeadlineExceeded, which the kubelet reads as a probe timeout.
func (s *RuntimeServer) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	exec, err := service(s.opts.Exec)
	if err != nil {
		return nil, err
	}
	id, err := s.execTarget(req.GetContainerId(), req.GetCmd())
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(max(req.GetTimeout(), 0)) * time.Second
	stdout, stderr, code, err := exec.ExecSync(ctx, id, req.GetCmd(), timeout)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}
