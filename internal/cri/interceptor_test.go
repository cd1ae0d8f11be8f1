package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	nlog "github.com/noded-dev/noded/internal/log"
)

type recordingObserver struct {
	method string
	code   codes.Code
}

func (r *recordingObserver) Observe(method string, code codes.Code, _ time.Duration) {
	r.method, r.code = method, code
}

func TestInterceptorMapsDomainErrors(t *testing.T) {
	cause := errors.New("disk on fire")
	tests := []struct {
		desc    string
		err     error
		want    codes.Code
		wantMsg string
	}{
		{desc: "success", err: nil, want: codes.OK},
		{desc: "not found", err: errdefs.NotFound("container %q", "abc"), want: codes.NotFound, wantMsg: `container "abc"`},
		{desc: "wrapped not found", err: fmt.Errorf("stopping: %w", errdefs.NotFound("sandbox x")), want: codes.NotFound, wantMsg: "stopping: sandbox x"},
		{desc: "already exists", err: errdefs.AlreadyExists("name reserved by %s", "id1"), want: codes.AlreadyExists},
		{desc: "invalid argument", err: errdefs.InvalidArgument("bad image reference"), want: codes.InvalidArgument},
		{desc: "sentinel", err: fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), want: codes.InvalidArgument},
		{desc: "failed precondition", err: errdefs.FailedPrecondition("container is running"), want: codes.FailedPrecondition},
		{desc: "not implemented", err: errdefs.NotImplemented("attach"), want: codes.Unimplemented},
		{desc: "unavailable", err: errdefs.Unavailable("registry down"), want: codes.Unavailable},
		{desc: "unauthenticated", err: errdefs.Unauthenticated("registry said 401"), want: codes.Unauthenticated},
		{desc: "permission denied", err: errdefs.PermissionDenied("registry said 403"), want: codes.PermissionDenied},
		{desc: "deadline exceeded", err: fmt.Errorf("pull stalled: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{desc: "class helper", err: errdefs.DeadlineExceeded("no progress for %s", "1m"), want: codes.DeadlineExceeded},
		{desc: "cancelled", err: context.Canceled, want: codes.Canceled},
		{desc: "plain error is Unknown with its message", err: cause, want: codes.Unknown, wantMsg: "disk on fire"},
		{desc: "class keeps its cause", err: errdefs.InvalidArgument("parse: %w", cause), want: codes.InvalidArgument, wantMsg: "parse: disk on fire"},
		{desc: "already a status", err: status.Error(codes.ResourceExhausted, "slow down"), want: codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			obs := &recordingObserver{}
			ic := UnaryInterceptor(logrus.NewEntry(logrus.New()), obs)
			info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StopContainer"}
			_, err := ic(context.Background(), struct{}{}, info, func(ctx context.Context, _ any) (any, error) {
				if nlog.FromContext(ctx).Data["id"] == nil {
					t.Error("handler context carries no request id")
				}
				return nil, tt.err
			})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v, want %v (err %v)", got, tt.want, err)
			}
			if tt.wantMsg != "" && status.Convert(err).Message() != tt.wantMsg {
				t.Errorf("message = %q, want %q", status.Convert(err).Message(), tt.wantMsg)
			}
			if obs.method != "StopContainer" || obs.code != tt.want {
				t.Errorf("observed %s/%v", obs.method, obs.code)
			}
		})
	}
}

// The domain class must stay reachable through errors.Is alongside a %w cause.
func TestErrdefsKeepsCause(t *testing.T) {
	cause := errors.New("root")
	err := errdefs.NotFound("image %s: %w", "busybox", cause)
	if !errdefs.IsNotFound(err) || !errors.Is(err, cause) {
		t.Fatalf("class or cause lost: %v", err)
	}
	if err.Error() != "image busybox: root" {
		t.Fatalf("message = %q", err.Error())
	}
}

func TestInterceptorRecoversPanics(t *testing.T) {
	ic := UnaryInterceptor(logrus.NewEntry(logrus.New()), nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.ImageService/PullImage"}
	_, err := ic(context.Background(), struct{}{}, info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panic became %v, want Internal", err)
	}
}

// loggingPods is a pod service that logs as the domain packages do:
// through the logger in the request's context.
type loggingPods struct{ podService }

func (loggingPods) RunPodSandbox(ctx context.Context, _ *runtimeapi.PodSandboxConfig, _ string) (ids.SandboxID, error) {
	nlog.FromContext(ctx).Info("inside the domain call")
	return "0123456789abcdef", nil
}

// A line logged inside a domain call carries the id and RPC name the
// interceptor gave the request, and so does the interceptor's own line.
func TestDomainLinesCarryTheRequestID(t *testing.T) {
	base, hook := test.NewNullLogger()
	base.SetLevel(logrus.DebugLevel)
	srv := NewServer(Options{Pods: loggingPods{}})
	ic := UnaryInterceptor(logrus.NewEntry(base), nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/RunPodSandbox"}
	for range 2 { // two requests: two different ids
		_, err := ic(context.Background(), &runtimeapi.RunPodSandboxRequest{}, info, func(ctx context.Context, req any) (any, error) {
			return srv.RunPodSandbox(ctx, req.(*runtimeapi.RunPodSandboxRequest))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var domain []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Message == "inside the domain call" {
			domain = append(domain, e)
		}
	}
	if len(domain) != 2 {
		t.Fatalf("%d domain lines, want 2", len(domain))
	}
	for _, e := range domain {
		if e.Data["method"] != "RunPodSandbox" || e.Data["id"] == nil || e.Data["id"] == "" {
			t.Errorf("domain line fields %v: want the request's id and method", e.Data)
		}
	}
	if domain[0].Data["id"] == domain[1].Data["id"] {
		t.Errorf("two requests logged the same id %v", domain[0].Data["id"])
	}
	// The interceptor's response line of the first request has its id.
	for _, e := range hook.AllEntries() {
		if e.Message == "response" && e.Data["id"] == domain[0].Data["id"] {
			return
		}
	}
	t.Errorf("no interceptor line with the domain line's id %v", domain[0].Data["id"])
}
