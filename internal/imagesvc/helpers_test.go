package imagesvc

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/imagesvc/regtest"
	"github.com/noded-dev/noded/internal/storage"
)

// requireOverlay skips tests that need root and a kernel with overlayfs.
func requireOverlay(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers/storage's overlay driver mounts")
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fs, []byte("overlay")) {
		t.Skip("needs overlayfs in the kernel")
	}
}

type env struct {
	t     testing.TB
	dir   string
	store *storage.Store
	svc   *Service
	reg   *regtest.Registry
	conf  string
}

type envOption func(*Options)

// newEnv opens a private store and service, and starts a registry that
// registries.conf marks insecure and lists for short names.
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	requireOverlay(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, reg: regtest.New()}
	t.Cleanup(e.reg.Close)
	e.conf = filepath.Join(dir, "registries.conf")
	if err := regtest.WriteRegistriesConf(e.conf, e.reg.Host); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		log.SetLevel(logrus.DebugLevel)
	}
	store, err := storage.Open(storage.Options{
		Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "overlay",
		Log: logrus.NewEntry(log),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	t.Cleanup(func() { cleanupStore(t, store, dir) })
	o := Options{
		Store: store, RegistriesConf: e.conf, PauseImage: "localhost/noded/pause:builtin",
		ProgressTimeout: time.Minute, Log: logrus.NewEntry(log),
		SignaturePolicy: writePolicy(t, dir),
		retryDelays:     []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, f := range opts {
		f(&o)
	}
	if e.svc, err = New(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.svc.Close)
	return e
}

// writePolicy writes an accept-anything policy so that tests never depend
// on the host's /etc/containers/policy.json.
func writePolicy(t testing.TB, dir string) string {
	p := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(p, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cleanupStore shuts the store down and unmounts anything left below dir.
func cleanupStore(t testing.TB, store *storage.Store, dir string) {
	if err := store.Close(); err != nil {
		t.Errorf("closing store: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var below []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			below = append(below, f[4])
		}
	}
	for i := len(below) - 1; i >= 0; i-- {
		_ = syscall.Unmount(below[i], syscall.MNT_DETACH)
	}
}

// image builds and pushes an image of layers to repoTag.
func (e *env) push(repoTag string, user string, layers ...v1.Layer) v1.Image {
	e.t.Helper()
	img, err := regtest.Image(runtime.GOARCH, user, layers...)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.reg.Push(repoTag, img); err != nil {
		e.t.Fatal(err)
	}
	return img
}

func layers(t testing.TB, seeds ...int64) []v1.Layer {
	t.Helper()
	out := make([]v1.Layer, len(seeds))
	for i, s := range seeds {
		l, err := regtest.Layer(s, "d"+string(rune('a'+i)), 2, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l
	}
	return out
}

// digests returns the config and layer blob digests of img.
func digests(t testing.TB, img v1.Image) (config string, blobs []string) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest.String())
	}
	return m.Config.Digest.String(), blobs
}

func imageID(t testing.TB, img v1.Image) storage.ImageID {
	t.Helper()
	cfg, _ := digests(t, img)
	id, ok := storage.ParseImageID(cfg)
	if !ok {
		t.Fatalf("bad config digest %s", cfg)
	}
	return id
}

func (e *env) unpacked() int { return int(metricValue(e.svc.metrics.layersUnpacked)) }
func (e *env) fetched() int  { return int(metricValue(e.svc.metrics.blobsFetched)) }

// assertNoLeftovers checks that no layer and no temporary file is left.
func (e *env) assertNoLeftovers() {
	e.t.Helper()
	ls, err := e.store.Layers().List()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ls) != 0 {
		e.t.Errorf("%d layers left in storage: %+v", len(ls), ls)
	}
	tmpDir := e.svc.commit.blobs.tmpDir
	tmp, _ := os.ReadDir(tmpDir)
	if len(tmp) != 0 {
		e.t.Errorf("%d temporary files left in %s", len(tmp), tmpDir)
	}
}

// rootfs mounts a storage container of image id (unmounted and deleted
// when the test ends) and returns its root: what a container of the image
// would see.
func (e *env) rootfs(id storage.ImageID) string {
	e.t.Helper()
	c, err := e.store.Containers().CreateContainer("", id, storage.CreateContainerOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.store.Containers().Unmount(c.ID, true)
		_ = e.store.Containers().DeleteContainer(c.ID)
	})
	root, err := e.store.Containers().Mount(c.ID, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return root
}

// peakMemory runs fn and returns how far, at their highest, the heap (the
// bytes of live and not yet collected objects, sampled every few
// milliseconds) and the process's resident set (VmHWM, reset before fn
// through /proc/self/clear_refs; 0 if the kernel does not allow that)
// rose above what they were before.
func peakMemory(t testing.TB, fn func()) (heap, rss uint64) {
	t.Helper()
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	readHeap := func() uint64 { rtmetrics.Read(sample); return sample[0].Value.Uint64() }
	runtime.GC()
	heapBase := readHeap()
	rssBase, rssOK := procStatus("VmRSS"), os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if h := readHeap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	fn()
	close(stop)
	<-done
	if p := peak.Load(); p > heapBase {
		heap = p - heapBase
	}
	if hwm := procStatus("VmHWM"); rssOK && hwm > rssBase {
		rss = hwm - rssBase
	}
	return heap, rss
}

// procStatus reads a size field of /proc/self/status, in bytes.
func procStatus(field string) uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type v1Image = v1.Image

func gauge(g prometheus.Gauge) float64 { return metricValue(g) }

func mutateConfigFile(img v1.Image, cfg *v1.ConfigFile) (v1.Image, error) {
	return mutate.ConfigFile(img, cfg)
}

func goarch() string { return runtime.GOARCH }

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

func readAll(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
