// Package regtest is an in-process registry for tests and benchmarks of
// the image service: go-containerregistry's registry behind a handler that
// counts GETs per blob and per manifest, counts the bytes it serves and
// can inject faults (errors, corrupt content, stalls, authentication).
// It listens on 127.0.0.1 only.
package regtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Request describes one registry request as the hooks see it.
type Request struct {
	Method string
	// Kind is "blob", "manifest" or "" (e.g. the /v2/ ping).
	Kind string
	Repo string
	// Ref is the blob digest, or the manifest's tag or digest.
	Ref string
	// N is how many GETs of this blob or manifest came before this one.
	N    int
	HTTP *http.Request
}

// Hook may answer a request itself (returning true) or let the registry
// answer it. It may also wrap the response writer for the registry.
type Hook func(w http.ResponseWriter, r *Request) (handled bool)

// Registry is a running in-process registry.
type Registry struct {
	// Host is "127.0.0.1:<port>".
	Host string
	srv  *httptest.Server
	reg  http.Handler

	mu     sync.Mutex
	gets   map[string]int
	served int64
	hooks  []Hook
}

var pathRE = regexp.MustCompile(`^/v2/(.+)/(blobs|manifests)/([^/]+)$`)

// New starts a registry; Close stops it.
func New() *Registry {
	r := &Registry{gets: map[string]int{}, reg: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Close stops the server.
func (r *Registry) Close() { r.srv.Close() }

func (r *Registry) serve(w http.ResponseWriter, hr *http.Request) {
	req := &Request{Method: hr.Method, HTTP: hr}
	if m := pathRE.FindStringSubmatch(hr.URL.Path); m != nil {
		req.Repo, req.Ref = m[1], m[3]
		req.Kind = strings.TrimSuffix(m[2], "s")
	}
	r.mu.Lock()
	if hr.Method == http.MethodGet && req.Kind != "" {
		key := r.key(req.Kind, req.Repo, req.Ref)
		req.N = r.gets[key]
		r.gets[key]++
	}
	hooks := append([]Hook(nil), r.hooks...)
	r.mu.Unlock()
	cw := &countingWriter{ResponseWriter: w, r: r}
	for _, h := range hooks {
		if h(cw, req) {
			return
		}
	}
	r.reg.ServeHTTP(cw, hr)
}

func (r *Registry) key(kind, repo, ref string) string {
	if kind == "blob" {
		return "blob " + ref
	}
	return "manifest " + repo + " " + ref
}

type countingWriter struct {
	http.ResponseWriter
	r *Registry
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.r.mu.Lock()
	c.r.served += int64(n)
	c.r.mu.Unlock()
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// AddHook installs a hook; hooks run in the order added.
func (r *Registry) AddHook(h Hook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, h)
}

// ClearHooks removes every hook.
func (r *Registry) ClearHooks() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = nil
}

// BlobGets is the number of GETs of a blob, across repositories.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets["blob "+digest]
}

// ManifestGets is the number of GETs of repo's manifest by ref (tag or
// digest).
func (r *Registry) ManifestGets(repo, ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets["manifest "+repo+" "+ref]
}

// Gets returns a copy of every GET count, keyed "blob <digest>" or
// "manifest <repo> <ref>".
func (r *Registry) Gets() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.gets))
	for k, v := range r.gets {
		out[k] = v
	}
	return out
}

// BytesServed is the number of response body bytes written.
func (r *Registry) BytesServed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served
}

// Reset zeroes the counters.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets = map[string]int{}
	r.served = 0
}

// Ref is the full reference of repoAndTag ("repo:tag") in this registry.
func (r *Registry) Ref(repoAndTag string) string { return r.Host + "/" + repoAndTag }

// Push uploads an image as repoAndTag ("repo:tag") and resets the
// counters.
func (r *Registry) Push(repoAndTag string, img v1.Image) error {
	ref, err := name.ParseReference(r.Ref(repoAndTag), name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return err
	}
	r.Reset()
	return nil
}

// PushIndex uploads an image index as repoAndTag and resets the counters.
func (r *Registry) PushIndex(repoAndTag string, idx v1.ImageIndex) error {
	ref, err := name.ParseReference(r.Ref(repoAndTag), name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		return err
	}
	r.Reset()
	return nil
}

// WriteRegistriesConf writes a containers-registries.conf(5) that marks
// the hosts as insecure (plain HTTP) and lists the first as the
// unqualified-search registry.
func WriteRegistriesConf(path string, hosts ...string) error {
	var b strings.Builder
	if len(hosts) > 0 {
		fmt.Fprintf(&b, "unqualified-search-registries = [%q]\nshort-name-mode = \"permissive\"\n\n", hosts[0])
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "[[registry]]\nlocation = %q\ninsecure = true\n\n", h)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Layer builds a gzip-compressed layer holding files random files of
// size bytes each under dir, from a deterministic seed. Random data does
// not compress: the blob is about as big as the content.
func Layer(seed int64, dir string, files int, size int64) (v1.Layer, error) {
	rng := rand.New(rand.NewSource(seed)) //nolint:gosec // test data
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	mtime := time.Unix(1700000000, 0)
	if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
		return nil, err
	}
	for i := 0; i < files; i++ {
		if err := tw.WriteHeader(&tar.Header{
			Name: fmt.Sprintf("%s/f%d-%d", dir, seed, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime,
		}); err != nil {
			return nil, err
		}
		if _, err := io.CopyN(tw, rng, size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gzipLayer(gz.Bytes())
}

// ZerosLayer builds a gzip-compressed layer of one file of size zero
// bytes: a gzip bomb (a GiB is a blob of about a MiB). The tar is written
// straight into the compressor, so building it takes no memory of size.
func ZerosLayer(size int64) (v1.Layer, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(1700000000, 0)}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gzipLayer(gz.Bytes())
}

// gzipLayer is the Docker layer whose compressed blob is blob.
func gzipLayer(blob []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.DockerLayer))
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Image builds a linux image of the given layers for arch, with config
// user (may be empty) and an OCI or Docker manifest.
func Image(arch, user string, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.User = user
	cf.Config.Cmd = []string{"/bin/true"}
	cf.Created = v1.Time{Time: time.Unix(1700000000, 0).UTC()}
	return mutate.ConfigFile(img, cf)
}

// Index builds a manifest list of the images, each for its platform.
func Index(imgs map[string]v1.Image) v1.ImageIndex {
	var adds []mutate.IndexAddendum
	for arch, img := range imgs {
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}

// FailGETs answers the first n GETs (every one if n < 0) of a blob or
// manifest (any when ref is "") with status.
func FailGETs(kind, ref string, n, status int) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if !r.matches(kind, ref, n) {
			return false
		}
		http.Error(w, "injected failure", status)
		return true
	}
}

// CorruptBlob serves the blob with one byte changed (same length).
func CorruptBlob(reg *Registry, digest string) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if r.Method != http.MethodGet || r.Kind != "blob" || r.Ref != digest {
			return false
		}
		rec := httptest.NewRecorder()
		reg.reg.ServeHTTP(rec, r.HTTP)
		body := rec.Body.Bytes()
		if len(body) > 0 {
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
		return true
	}
}

// StallBlob sends the first half of the blob, then waits until release is
// closed (or the client goes away) before sending the rest. started is
// closed when the first such GET begins.
func StallBlob(reg *Registry, digest string, started, release chan struct{}) Hook {
	var once sync.Once
	return func(w http.ResponseWriter, r *Request) bool {
		if r.Method != http.MethodGet || r.Kind != "blob" || r.Ref != digest {
			return false
		}
		rec := httptest.NewRecorder()
		reg.reg.ServeHTTP(rec, r.HTTP)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		half := len(body) / 2
		_, _ = w.Write(body[:half])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		once.Do(func() { close(started) })
		select {
		case <-release:
		case <-r.HTTP.Context().Done():
			return true
		}
		_, _ = w.Write(body[half:])
		return true
	}
}

// RequireBasicAuth answers 401 unless the request carries these
// credentials.
func RequireBasicAuth(user, pass string) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if u, p, ok := r.HTTP.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="regtest"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	}
}

// RequireBearer answers 401 unless the request carries this bearer token.
func RequireBearer(token string) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if r.HTTP.Header.Get("Authorization") == "Bearer "+token {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="regtest"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

// RequireOAuthRefresh makes the registry speak the token flow that an
// identity token (an OAuth2 refresh token) goes through: registry requests
// need "Bearer access"; the 401 names a realm, /token, which exchanges
// grant_type=refresh_token with this refresh token for that access token.
func RequireOAuthRefresh(host, refresh, access string) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if r.HTTP.URL.Path == "/token" {
			if err := r.HTTP.ParseForm(); err != nil || r.HTTP.Method != http.MethodPost ||
				r.HTTP.PostForm.Get("grant_type") != "refresh_token" || r.HTTP.PostForm.Get("refresh_token") != refresh {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"expires_in":300}`, access)
			return true
		}
		if r.HTTP.Header.Get("Authorization") == "Bearer "+access {
			return false
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="regtest"`, host))
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

// Slow delays every blob GET by d (to make concurrent requests overlap).
func Slow(d time.Duration) Hook {
	return func(_ http.ResponseWriter, r *Request) bool {
		if r.Kind == "blob" && r.Method == http.MethodGet {
			select {
			case <-time.After(d):
			case <-r.HTTP.Context().Done():
			}
		}
		return false
	}
}

// WaitFor polls cond every few milliseconds until it holds or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// BreakBlob sends the first half of the blob's first n GETs, then drops
// the connection.
func BreakBlob(reg *Registry, digest string, n int) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if r.Method != http.MethodGet || r.Kind != "blob" || r.Ref != digest || r.N >= n {
			return false
		}
		rec := httptest.NewRecorder()
		reg.reg.ServeHTTP(rec, r.HTTP)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}
