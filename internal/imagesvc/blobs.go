package imagesvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.podman.io/image/v5/types"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/tracing"
)

// errDigestMismatch marks content that does not match its digest.
var errDigestMismatch = errors.New("digest mismatch")

// errAborted is what followers of a download that stopped without a
// result (a panic) read at its end.
var errAborted = errors.New("download aborted")

// blobSource is where one pull gets its blobs: a registry (through a
// containers/image ImageSource) or, for an import, memory. It is shared by
// the flights working for the pull and closed when the last lets go.
type blobSource struct {
	get func(ctx context.Context, info types.BlobInfo) (io.ReadCloser, int64, error)
	// origin names the source in messages ("registry example.com");
	// host is the registry's host[:port] ("" for a local source).
	origin string
	host   string
	// key identifies the place and the credentials: a download that failed
	// from one source is retried by a waiter with a different key.
	key   string
	refs  atomic.Int32
	close func()
}

func newBlobSource(host, origin, key string, get func(context.Context, types.BlobInfo) (io.ReadCloser, int64, error), closeFn func()) *blobSource {
	b := &blobSource{get: get, origin: origin, host: host, key: key, close: closeFn}
	b.refs.Store(1)
	return b
}

func (b *blobSource) acquire() { b.refs.Add(1) }

func (b *blobSource) release() {
	if b.refs.Add(-1) == 0 && b.close != nil {
		b.close()
	}
}

// blobFile is a blob in a temporary file. While it is being downloaded,
// readers can follow it (see open): they get the bytes as they arrive and,
// at the end, an error instead of io.EOF if the download failed or the
// content does not match the digest. So unpacking can start before the
// download ends without ever committing unverified content.
type blobFile struct {
	path   string
	digest digest.Digest

	mu   sync.Mutex
	cond *sync.Cond
	size int64 // bytes written so far; the blob's size once done
	done bool
	err  error // why the download failed, once done
}

func newBlobFile(path string, d digest.Digest) *blobFile {
	b := &blobFile{path: path, digest: d}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *blobFile) remove() { _ = os.Remove(b.path) }

func (b *blobFile) grew(n int64) {
	b.mu.Lock()
	b.size += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *blobFile) finish(err error) {
	b.mu.Lock()
	b.done, b.err = true, err
	b.mu.Unlock()
	b.cond.Broadcast()
}

// result waits until the download ends (or ctx does) and returns its
// error: the root cause when an unpack that followed it failed.
func (b *blobFile) result(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		// Under the lock, so that a waiter is either before its check of
		// ctx or already in Wait.
		b.mu.Lock()
		defer b.mu.Unlock()
		b.cond.Broadcast()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.done && ctx.Err() == nil {
		b.cond.Wait()
	}
	return b.err
}

func (b *blobFile) written() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// open returns a reader of the whole blob that follows the download.
func (b *blobFile) open() (io.ReadCloser, error) {
	f, err := os.Open(b.path)
	if err != nil {
		// A failed download removes its file; report why it failed.
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.done && b.err != nil {
			return nil, b.err
		}
		return nil, err
	}
	return &blobReader{b: b, f: f}, nil
}

type blobReader struct {
	b   *blobFile
	f   *os.File
	off int64
}

func (r *blobReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for b.size == r.off && !b.done {
		b.cond.Wait()
	}
	avail, done, err := b.size-r.off, b.done, b.err
	b.mu.Unlock()
	if avail == 0 {
		if done && err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	n, rerr := r.f.Read(p[:min(int64(len(p)), avail)])
	r.off += int64(n)
	if rerr == io.EOF {
		rerr = nil // more is coming, or the next Read reports the end
	}
	return n, rerr
}

func (r *blobReader) Close() error { return r.f.Close() }

// sourcedError is a download failure and the source it came from.
type sourcedError struct {
	key string
	err error
}

func (e *sourcedError) Error() string { return e.err.Error() }
func (e *sourcedError) Unwrap() error { return e.err }

// fetcher downloads blobs for pulls and imports. It owns the blobs table
// (each digest downloaded once among concurrent pulls, abandoned when no
// pull needs it any more), the download slots (max-parallel-downloads,
// handed out by priority), the sequence that numbers blobs for those
// priorities, the temporary files on the graph root's filesystem and the
// progress watchdog of each download. Its fields are set once; the table,
// the slots and each blobFile have their own locks, never held together.
type fetcher struct {
	tmpDir          string
	progressTimeout atomic.Int64 // a time.Duration; a reload changes it
	retryDelays     []time.Duration
	metrics         *metrics

	blobs    *group[string, *blobFile]
	download *slots
	// seq numbers blobs for download priority (see slots).
	seq atomic.Uint64
}

type fetcherOptions struct {
	tmpDir          string
	parallel        int
	progressTimeout time.Duration
	retryDelays     []time.Duration
	metrics         *metrics
}

// newFetcher returns a fetcher whose downloads run on base and join wg.
func newFetcher(base context.Context, wg *sync.WaitGroup, o fetcherOptions) *fetcher {
	f := &fetcher{
		tmpDir: o.tmpDir, retryDelays: o.retryDelays, metrics: o.metrics,
		blobs:    newGroup[string, *blobFile](base, wg, true, func(b *blobFile) { b.remove() }),
		download: newSlots(o.parallel),
	}
	f.progressTimeout.Store(int64(o.progressTimeout))
	return f
}

// priorities reserves n consecutive download priorities and returns the
// first: a pull numbers its config and then its layers bottom up, and
// earlier pulls come before later ones.
func (s *fetcher) priorities(n int) uint64 {
	return s.seq.Add(uint64(n)) - uint64(n)
}

// fetchBlob returns the blob, downloading it from src unless a download of
// the same digest is in flight, which it joins instead. With follow it
// returns as soon as the download has started (read the file with open);
// else once the blob is complete and verified. A joined download that
// failed at another source is retried once from src. The caller must call
// release when done with the file.
func (s *fetcher) fetchBlob(ctx context.Context, src *blobSource, info types.BlobInfo, prio uint64, follow bool) (*blobFile, func(), error) {
	for attempt := 0; ; attempt++ {
		src.acquire()
		c, started := s.blobs.joinPublishing(ctx, info.Digest.String(), func(fctx context.Context, publish func(*blobFile)) (*blobFile, error) {
			defer src.release()
			fctx, span := tracing.Start(fctx, "image.blob.fetch", attribute.String("noded.digest", info.Digest.String()), attribute.Int64("noded.size", info.Size))
			b, err := s.downloadBlob(fctx, src, info, prio, publish)
			tracing.End(span, err)
			return b, err
		})
		if !started {
			src.release()
			s.metrics.blobsSkipped.WithLabelValues("coalesced").Inc()
		}
		// The wait is the request's; a coalesced one waits for a fetch
		// another request started.
		wctx, span := tracing.Start(ctx, "image.blob.wait", attribute.String("noded.digest", info.Digest.String()), tracing.Coalesced(!started))
		var b *blobFile
		var err error
		if follow {
			b, err = c.waitPublished(wctx)
		} else {
			b, err = c.wait(wctx)
		}
		tracing.End(span, err)
		if err == nil {
			return b, c.release, nil
		}
		c.release()
		var se *sourcedError
		if !started && attempt == 0 && ctx.Err() == nil && errors.As(err, &se) && se.key != src.key {
			log.FromContext(ctx).WithError(err).WithField("blob", info.Digest).Debugf("a joined download failed; retrying from %s", src.origin)
			continue
		}
		return nil, nil, err
	}
}

// downloadBlob downloads a blob to a temporary file, publishing the file
// once it exists and verifying size and digest as it streams. Transient
// failures are retried; a retry skips what was already written (readers
// may have consumed it), and the digest covers the bytes as joined.
func (s *fetcher) downloadBlob(ctx context.Context, src *blobSource, info types.BlobInfo, prio uint64, publish func(*blobFile)) (_ *blobFile, retErr error) {
	if err := info.Digest.Validate(); err != nil {
		return nil, &sourcedError{key: src.key, err: errdefs.InvalidArgument("blob digest %q: %v", info.Digest, err)}
	}
	if err := s.download.acquire(ctx, prio); err != nil {
		return nil, &sourcedError{key: src.key, err: err}
	}
	defer s.download.release()

	f, err := s.tempFile()
	if err != nil {
		return nil, err
	}
	b := newBlobFile(f.Name(), info.Digest)
	completed := false
	defer func() {
		_ = f.Close()
		if !completed && retErr == nil {
			// Panicking (the flight group recovers it): followers must
			// see a failed download, not a blob that ended early.
			retErr = errAborted
		}
		b.finish(retErr)
		if retErr != nil {
			// Followers get the error first; the file goes once no
			// reference is left (the group frees only good results).
			b.remove()
		}
	}()
	publish(b)
	verifier := info.Digest.Verifier()
	start := time.Now()
	interrupted, err := retry(ctx, s.retryDelays, log.FromContext(ctx).WithField("blob", info.Digest), "fetching from "+src.origin, func() error {
		return s.downloadOnce(ctx, src, info, b, f, verifier)
	})
	if interrupted {
		return nil, &sourcedError{key: src.key, err: context.Cause(ctx)}
	}
	if err != nil {
		if src.host != "" {
			err = registryError(err, src.host, "fetching blob "+info.Digest.String())
		}
		return nil, &sourcedError{key: src.key, err: err}
	}
	n := b.written()
	if want := info.Size; want > 0 && n != want {
		return nil, &sourcedError{key: src.key, err: errdefs.FailedPrecondition("blob %s from %s: got %d bytes, the manifest says %d: %w", info.Digest, src.origin, n, want, errDigestMismatch)}
	}
	if !verifier.Verified() {
		return nil, &sourcedError{key: src.key, err: errdefs.FailedPrecondition("blob %s from %s: content does not match its digest (corrupt or tampered data): %w", info.Digest, src.origin, errDigestMismatch)}
	}
	s.metrics.blobsFetched.Inc()
	log.FromContext(ctx).WithFields(map[string]any{"blob": info.Digest, "size": n, "duration": time.Since(start)}).Debugf("blob fetched from %s", src.origin)
	completed = true
	return b, nil
}

// downloadOnce makes one request for the blob and appends what b does not
// have yet to f (and the verifier).
func (s *fetcher) downloadOnce(ctx context.Context, src *blobSource, info types.BlobInfo, b *blobFile, f *os.File, verifier digest.Verifier) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := s.watch(ctx, cancel, "blob "+info.Digest.Encoded()[:12]+" from "+src.origin, info.Size)
	defer p.stop()

	rc, _, err := src.get(ctx, info)
	if err != nil {
		return causeOr(ctx, err)
	}
	defer rc.Close()
	body := p.reader(rc)
	have := b.written()
	if have > 0 { // a retry: skip what we have
		if _, err := io.CopyN(io.Discard, body, have); err != nil {
			return causeOr(ctx, err)
		}
	}
	if info.Size > 0 {
		body = io.LimitReader(body, info.Size+1-have) // a registry may not stream forever
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			_, _ = verifier.Write(buf[:n])
			b.grew(int64(n))
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return causeOr(ctx, rerr)
		}
	}
}

// tempFile creates a temporary file for a download.
func (s *fetcher) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(s.tmpDir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file in %s: %w", filepath.Dir(s.tmpDir), err)
	}
	return f, nil
}

// causeOr returns errNoProgress (wrapped) when ctx was cancelled for lack
// of progress, else err.
func causeOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errNoProgress) {
		return fmt.Errorf("%w (%w)", errNoProgress, err)
	}
	return err
}

// progress tracks the bytes of one download; a watchdog cancels the
// download when none arrive for the progress timeout and logs progress
// at debug level.
type progress struct {
	bytes prometheus.Counter // the metric of bytes received
	last  atomic.Int64       // unix nanoseconds of the last byte
	n     atomic.Int64
	total int64
	what  string
	done  chan struct{}
}

func (s *fetcher) watch(ctx context.Context, cancel context.CancelCauseFunc, what string, total int64) *progress {
	p := &progress{bytes: s.metrics.bytes, total: total, what: what, done: make(chan struct{})}
	p.last.Store(time.Now().UnixNano())
	timeout := time.Duration(s.progressTimeout.Load())
	l := log.FromContext(ctx)
	tick := time.Second
	if timeout > 0 && timeout/4 < tick {
		tick = max(timeout/4, 5*time.Millisecond)
	}
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-p.done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				idle := now.Sub(time.Unix(0, p.last.Load()))
				if timeout > 0 && idle >= timeout {
					l.Warnf("pulling %s: no data for %s, giving up", what, idle.Round(time.Millisecond))
					cancel(errNoProgress)
					return
				}
				if now.Sub(lastLog) >= 5*time.Second {
					lastLog = now
					l.Debugf("pulling %s: %s of %s", what, units.HumanSize(float64(p.n.Load())), units.HumanSize(float64(total)))
				}
			}
		}
	}()
	return p
}

func (p *progress) stop() { close(p.done) }

func (p *progress) reader(r io.Reader) io.Reader { return progressReader{p: p, r: r} }

type progressReader struct {
	p *progress
	r io.Reader
}

func (pr progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.last.Store(time.Now().UnixNano())
		pr.p.n.Add(int64(n))
		pr.p.bytes.Add(float64(n))
	}
	return n, err
}
