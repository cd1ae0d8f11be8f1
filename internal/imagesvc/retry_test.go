package imagesvc

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"

	"github.com/noded-dev/noded/internal/log"
)

func TestRetry(t *testing.T) {
	delays := []time.Duration{time.Millisecond, 2 * time.Millisecond}
	transient := docker.UnexpectedHTTPStatusError{StatusCode: http.StatusServiceUnavailable}
	permanent := docker.UnexpectedHTTPStatusError{StatusCode: http.StatusNotFound}
	tests := []struct {
		desc string
		// results are op's results, one per attempt; the last repeats.
		results         []error
		cancelled       bool
		wantAttempts    int
		wantErr         error
		wantInterrupted bool
	}{
		{desc: "first attempt succeeds", results: []error{nil}, wantAttempts: 1},
		{desc: "transient failure then success", results: []error{transient, nil}, wantAttempts: 2},
		{desc: "connection refused is transient", results: []error{syscall.ECONNREFUSED, nil}, wantAttempts: 2},
		{desc: "permanent failure is not retried", results: []error{permanent}, wantAttempts: 1, wantErr: permanent},
		{desc: "digest mismatch is not retried", results: []error{errDigestMismatch}, wantAttempts: 1, wantErr: errDigestMismatch},
		{desc: "delays used up", results: []error{transient}, wantAttempts: 3, wantErr: transient},
		{desc: "ended context stops before the pause", results: []error{transient}, cancelled: true, wantAttempts: 1, wantErr: transient, wantInterrupted: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			attempts := 0
			interrupted, err := retry(ctx, delays, log.FromContext(ctx), "test request", func() error {
				err := tt.results[min(attempts, len(tt.results)-1)]
				attempts++
				return err
			})
			if attempts != tt.wantAttempts || !errors.Is(err, tt.wantErr) || interrupted != tt.wantInterrupted {
				t.Errorf("%d attempts, err %v, interrupted %v; want %d, %v, %v", attempts, err, interrupted, tt.wantAttempts, tt.wantErr, tt.wantInterrupted)
			}
		})
	}
}

// A context that ends during a pause ends the retries at once.
func TestRetryInterruptedDuringPause(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	transient := docker.UnexpectedHTTPStatusError{StatusCode: http.StatusBadGateway}
	start := time.Now()
	attempts := 0
	interrupted, err := retry(ctx, []time.Duration{time.Hour}, log.FromContext(ctx), "test request", func() error {
		attempts++
		return transient
	})
	if !interrupted || !errors.Is(err, transient) || attempts != 1 {
		t.Errorf("interrupted %v, err %v, %d attempts", interrupted, err, attempts)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("retry waited %s after the context ended", d)
	}
}
