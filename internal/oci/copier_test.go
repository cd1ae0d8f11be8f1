package oci

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

// slowWriter records the size of each write and takes delay over each.
type slowWriter struct {
	mu     sync.Mutex
	delay  time.Duration
	fail   bool
	writes []int
	got    bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("client gone")
	}
	w.writes = append(w.writes, len(p))
	w.got.Write(p)
	return len(p), nil
}

func TestCopierOutput(t *testing.T) {
	tests := []struct {
		name      string
		chunks    int           // writes of 4 KiB by the "process"
		pace      time.Duration // between them
		delay     time.Duration // of each write to the client
		maxWrites int           // at most this many writes reach the client
	}{
		// A fast client and a process writing 4 KiB every 50 µs or so:
		// the copy does not send each 4 KiB on its own (256 writes) but
		// lets the pipe gather.
		{"fast client gathers", 256, 50 * time.Microsecond, 0, 64},
		// A slow client: the pipe gathers while it writes.
		{"slow client gathers", 256, 0, 5 * time.Millisecond, 64},
		// One small write goes out alone, at once.
		{"lone write", 1, 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			dst := &slowWriter{delay: tc.delay}
			cp := newCopier()
			cp.output(dst, r)
			want := bytes.Repeat([]byte("0123456789abcdef"), 256*tc.chunks)
			for i := range tc.chunks {
				if _, err := w.Write(want[i*4096 : (i+1)*4096]); err != nil {
					t.Fatal(err)
				}
				// A busy wait: a sleep this short takes ~1 ms.
				for t0 := time.Now(); time.Since(t0) < tc.pace; {
				}
			}
			if tc.chunks == 1 {
				// It arrives without the writer closing.
				deadline := time.Now().Add(5 * time.Second)
				for {
					dst.mu.Lock()
					n := dst.got.Len()
					dst.mu.Unlock()
					if n == 4096 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("a lone write did not reach the client")
					}
					time.Sleep(time.Millisecond)
				}
			}
			w.Close()
			cp.stop(5*time.Second, r)
			if !bytes.Equal(dst.got.Bytes(), want) {
				t.Fatalf("client got %d bytes, want %d, in order", dst.got.Len(), len(want))
			}
			if len(dst.writes) > tc.maxWrites {
				t.Errorf("%d writes reached the client, want at most %d", len(dst.writes), tc.maxWrites)
			}
		})
	}
}

// When the client goes away, clientGone closes and stop still ends both
// goroutines, though the process keeps writing.
func TestCopierClientGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dst := &slowWriter{fail: true}
	cp := newCopier()
	cp.output(dst, r)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-cp.clientGone:
	case <-time.After(5 * time.Second):
		t.Fatal("clientGone not closed")
	}
	done := make(chan struct{})
	go func() { cp.stop(0, r); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the copies")
	}
}
