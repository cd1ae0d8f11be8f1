// Command pull benchmarks noded's image pulls (make bench-pull):
//
//	(a) one pull of a 5-layer image (~150 MB uncompressed, random data,
//	    gzip) after dropping the page cache;
//	(b) 20 concurrent pulls of that image after removing it;
//	(c) two images that share 3 of their 5 layers, pulled at once.
//
// The pulls run in this process through internal/imagesvc into a private
// containers/storage store (overlay); the registry runs in a child process
// (the same binary) so that the peak RSS printed is the puller's alone.
// For each scenario it prints the wall time, the registry GETs per blob
// and per manifest, the bytes fetched, layers unpacked and the peak RSS
// (VmHWM, reset before each scenario). It prints figures; it asserts only
// that the pulls succeed. Needs root (overlay mounts, drop_caches).
//
// With -endpoint or -compare (cri.go) the same image is pulled instead
// through the CRI PullImage call of a daemon: noded started here (or the
// runtime at -endpoint) and, with -compare, Debian's containerd 1.6 and
// containerd 2 (test/bench/peer), in alternating trials: one pull, then
// -concurrency pulls at once, each blob's GETs counted by the registry.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"

	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/imagesvc/regtest"
	"github.com/noded-dev/noded/internal/storage"
	"github.com/noded-dev/noded/test/bench/peer"
)

const registryEnv = "NODED_BENCH_PULL_REGISTRY"

type imageInfo struct {
	Ref    string   `json:"ref"`
	Config string   `json:"config"`
	Layers []string `json:"layers"`
	Repo   string   `json:"repo"`
	Tag    string   `json:"tag"`
}

type registryInfo struct {
	Host   string               `json:"host"`
	Images map[string]imageInfo `json:"images"`
}

type stats struct {
	Gets  map[string]int `json:"gets"`
	Bytes int64          `json:"bytes"`
}

func main() {
	if reexec.Init() {
		return
	}
	sizeMB := flag.Int("size", 150, "uncompressed size of each image in MB")
	nLayers := flag.Int("layers", 5, "layers per image")
	shared := flag.Int("shared", 3, "layers the two images of scenario (c) share")
	concurrency := flag.Int("concurrency", 20, "concurrent pulls in scenario (b)")
	parallel := flag.Int("max-parallel-downloads", imagesvc.DefaultMaxParallelDownloads, "noded's max-parallel-downloads")
	logLevel := flag.String("log-level", "warn", "log level of the image service")
	runs := flag.Int("runs", 3, "times to run the three scenarios (the summary gives medians)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the pulls (this process) to this file")
	rf := peer.AddFlags()
	flag.Parse()

	if os.Getenv(registryEnv) == "1" {
		if err := serveRegistry(*sizeMB, *nLayers, *shared); err != nil {
			fmt.Fprintln(os.Stderr, "registry:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-pull:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if rf.Endpoint != "" || rf.Compare {
		err = runCRI(*sizeMB, *nLayers, *concurrency, *runs, *rf)
	} else {
		err = run(*sizeMB, *nLayers, *shared, *concurrency, *parallel, *runs, *logLevel)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-pull:", err)
		os.Exit(1)
	}
}

// serveRegistry builds the images, pushes them to an in-process registry,
// prints where they are as one JSON line and serves until stdin closes.
func serveRegistry(sizeMB, nLayers, shared int) error {
	reg := regtest.New()
	defer reg.Close()
	reg.AddHook(func(w http.ResponseWriter, r *regtest.Request) bool {
		switch r.HTTP.URL.Path {
		case "/_bench/stats":
			_ = json.NewEncoder(w).Encode(stats{Gets: reg.Gets(), Bytes: reg.BytesServed()})
		case "/_bench/reset":
			reg.Reset()
		default:
			return false
		}
		return true
	})
	layerSize := int64(sizeMB) << 20 / int64(nLayers)
	const filesPerLayer = 4
	mkLayers := func(seed int64, n int) ([]v1.Layer, error) {
		var out []v1.Layer
		for i := 0; i < n; i++ {
			l, err := regtest.Layer(seed+int64(i), fmt.Sprintf("l%d", seed+int64(i)), filesPerLayer, layerSize/filesPerLayer)
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
		return out, nil
	}
	base, err := mkLayers(100, nLayers)
	if err != nil {
		return err
	}
	extraX, err := mkLayers(200, nLayers-shared)
	if err != nil {
		return err
	}
	extraY, err := mkLayers(300, nLayers-shared)
	if err != nil {
		return err
	}
	info := registryInfo{Host: reg.Host, Images: map[string]imageInfo{}}
	for name, ls := range map[string][]v1.Layer{
		"big": base,
		"x":   append(append([]v1.Layer{}, base[:shared]...), extraX...),
		"y":   append(append([]v1.Layer{}, base[:shared]...), extraY...),
	} {
		img, err := regtest.Image(runtime.GOARCH, "", ls...)
		if err != nil {
			return err
		}
		repo := "bench/" + name
		if err := reg.Push(repo+":1", img); err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		ii := imageInfo{Ref: reg.Ref(repo + ":1"), Config: m.Config.Digest.String(), Repo: repo, Tag: "1"}
		for _, l := range m.Layers {
			ii.Layers = append(ii.Layers, l.Digest.String())
		}
		info.Images[name] = ii
	}
	reg.Reset()
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes
	return nil
}

// startRegistry runs the registry child (this binary, registryEnv set),
// reads where it serves the images and returns a function that stops it.
func startRegistry(sizeMB, nLayers int) (registryInfo, func(), error) {
	var reg registryInfo
	child := exec.Command(os.Args[0], os.Args[1:]...)
	child.Env = append(os.Environ(), registryEnv+"=1")
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return reg, nil, err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return reg, nil, err
	}
	fmt.Printf("building and pushing the images (%d MB, %d layers; gzip)...\n", sizeMB, nLayers)
	if err := child.Start(); err != nil {
		return reg, nil, err
	}
	stop := func() {
		_ = stdin.Close()
		_ = child.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		stop()
		return reg, nil, fmt.Errorf("registry child: %w", err)
	}
	if err := json.Unmarshal(line, &reg); err != nil {
		stop()
		return reg, nil, err
	}
	return reg, stop, nil
}

func run(sizeMB, nLayers, shared, concurrency, parallel, runs int, logLevel string) (retErr error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (overlay mounts, drop_caches)")
	}
	reg, stopRegistry, err := startRegistry(sizeMB, nLayers)
	if err != nil {
		return err
	}
	defer stopRegistry()

	dir, err := os.MkdirTemp("", "noded-bench-pull-")
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "registries.conf")
	if err := regtest.WriteRegistriesConf(conf, reg.Host); err != nil {
		return err
	}
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		return err
	}
	log := logrus.New()
	level, err := logrus.ParseLevel(logLevel)
	if err != nil {
		return err
	}
	log.SetLevel(level)
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	store, err := storage.Open(storage.Options{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "overlay", Log: logrus.NewEntry(log)})
	if err != nil {
		return err
	}
	svc, err := imagesvc.New(imagesvc.Options{
		Store: store, RegistriesConf: conf, SignaturePolicy: policy, ProgressTimeout: 5 * time.Minute,
		MaxParallelDownloads: parallel, Log: logrus.NewEntry(log),
	})
	if err != nil {
		_ = store.Close()
		return err
	}
	defer func() {
		svc.Close()
		if err := store.Close(); err != nil && retErr == nil {
			retErr = err
		}
		unmountBelow(dir)
		_ = os.RemoveAll(dir)
	}()
	counters := map[string]prometheus.Collector{}
	for _, c := range svc.Collectors() {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			counters[descName(d)] = c
		}
	}

	b := &bench{svc: svc, host: reg.Host, counters: counters}
	ctx := context.Background()
	big := reg.Images["big"]
	fmt.Printf("registry %s (child process); store %s; max-parallel-downloads %d; GOMAXPROCS %d\n\n",
		reg.Host, dir, parallel, runtime.GOMAXPROCS(0))

	x, y := reg.Images["x"], reg.Images["y"]
	var as, bs, cs []result
	for i := 1; i <= runs; i++ {
		b.verbose = i == 1
		fmt.Printf("=== run %d of %d\n", i, runs)
		a, err := b.scenario("(a) one pull, page cache dropped", func() error {
			_, err := svc.Pull(ctx, big.Ref, imagesvc.Auth{})
			return err
		}, []imageInfo{big})
		if err != nil {
			return err
		}
		if err := svc.Remove(ctx, big.Ref); err != nil {
			return err
		}
		bres, err := b.scenario(fmt.Sprintf("(b) %d concurrent pulls after removing it, page cache dropped", concurrency), func() error {
			return parallelPulls(ctx, svc, concurrency, big.Ref)
		}, []imageInfo{big})
		if err != nil {
			return err
		}
		if err := svc.Remove(ctx, big.Ref); err != nil {
			return err
		}
		cres, err := b.scenario(fmt.Sprintf("(c) two images sharing %d of %d layers, pulled at once, page cache dropped", shared, nLayers), func() error {
			return parallelPulls(ctx, svc, 2, x.Ref, y.Ref)
		}, []imageInfo{x, y})
		if err != nil {
			return err
		}
		for _, ref := range []string{x.Ref, y.Ref} {
			if err := svc.Remove(ctx, ref); err != nil {
				return err
			}
		}
		as, bs, cs = append(as, a), append(bs, bres), append(cs, cres)
	}
	ma, mb, mc := median(as), median(bs), median(cs)
	fmt.Printf("=== summary over %d runs (median wall time; all runs in brackets)\n", runs)
	fmt.Printf("(a) one pull                 %.2fs %s\n", ma.Seconds(), walls(as))
	fmt.Printf("(b) %2d concurrent pulls      %.2fs %s = %.2fx (a) (target <= 1.1x)\n", concurrency, mb.Seconds(), walls(bs), mb.Seconds()/ma.Seconds())
	fmt.Printf("(c) two images sharing %d/%d  %.2fs %s\n", shared, nLayers, mc.Seconds(), walls(cs))
	fmt.Printf("every blob and manifest fetched exactly once in every run: %v\n", allOnce(as, bs, cs))
	fmt.Printf("peak RSS of the puller (VmHWM, max over runs): (a) %d MiB, (b) %d MiB, (c) %d MiB\n", maxHWM(as)>>10, maxHWM(bs)>>10, maxHWM(cs)>>10)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		fmt.Printf("largest layer-unpack helper process (containers/storage re-exec): %d MiB max RSS\n", ru.Maxrss/1024)
	}
	return nil
}

type bench struct {
	verbose  bool
	svc      *imagesvc.Service
	host     string
	counters map[string]prometheus.Collector
}

type result struct {
	wall time.Duration
	once bool
	hwm  int64 // kB
}

func median(rs []result) time.Duration {
	ws := make([]time.Duration, len(rs))
	for i, r := range rs {
		ws[i] = r.wall
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	return ws[len(ws)/2]
}

func walls(rs []result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2fs", r.wall.Seconds())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func allOnce(sets ...[]result) bool {
	for _, rs := range sets {
		for _, r := range rs {
			if !r.once {
				return false
			}
		}
	}
	return true
}

func maxHWM(rs []result) int64 {
	var m int64
	for _, r := range rs {
		m = max(m, r.hwm)
	}
	return m
}

func (b *bench) scenario(title string, pull func() error, imgs []imageInfo) (result, error) {
	fmt.Println(title)
	dropped := dropCaches()
	b.get("/_bench/reset", nil)
	before := b.metrics()
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM
	start := time.Now()
	err := pull()
	wall := time.Since(start)
	if err != nil {
		return result{}, err
	}
	hwm, rss := procStatus("VmHWM"), procStatus("VmRSS")
	after := b.metrics()
	var st stats
	b.get("/_bench/stats", &st)

	fmt.Printf("  wall time            %.3fs\n", wall.Seconds())
	if !dropped {
		fmt.Printf("  (could not drop the page cache: /proc/sys/vm/drop_caches not writable)\n")
	}
	once := true
	keys := make([]string, 0, len(st.Gets))
	for k := range st.Gets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		n := st.Gets[k]
		if n != 1 {
			once = false
		}
		lines = append(lines, fmt.Sprintf("%s %s=%d", label(k, imgs), short(k), n))
	}
	if b.verbose {
		fmt.Printf("  registry GETs        %s\n", strings.Join(lines, "\n                       "))
	}
	fmt.Printf("  every blob/manifest fetched once: %v\n", once)
	fmt.Printf("  bytes fetched        %.1f MB served by the registry, %.1f MB counted by noded_image_pull_bytes_total\n",
		float64(st.Bytes)/1e6, (after["noded_image_pull_bytes_total"]-before["noded_image_pull_bytes_total"])/1e6)
	fmt.Printf("  layers unpacked      %.0f (reused %.0f)\n",
		after["noded_image_pull_layers_unpacked_total"]-before["noded_image_pull_layers_unpacked_total"],
		after["noded_image_pull_layers_reused_total"]-before["noded_image_pull_layers_reused_total"])
	fmt.Printf("  peak RSS (VmHWM)     %s (VmRSS after: %s)\n\n", hwm, rss)
	var hwmKB int64
	_, _ = fmt.Sscanf(hwm, "%d", &hwmKB)
	return result{wall: wall, once: once, hwm: hwmKB}, nil
}

// label says which images a blob or manifest belongs to.
func label(key string, imgs []imageInfo) string {
	f := strings.Fields(key)
	if f[0] == "manifest" {
		return "manifest"
	}
	var owners []string
	for _, img := range imgs {
		if f[1] == img.Config {
			owners = append(owners, strings.TrimPrefix(img.Repo, "bench/")+" config")
		}
		for i, l := range img.Layers {
			if f[1] == l {
				owners = append(owners, fmt.Sprintf("%s layer %d", strings.TrimPrefix(img.Repo, "bench/"), i+1))
			}
		}
	}
	return "blob (" + strings.Join(owners, ", ") + ")"
}

func short(key string) string {
	f := strings.Fields(key)
	last := f[len(f)-1]
	if i := strings.Index(last, ":"); i >= 0 && len(last) > i+13 {
		return last[:i+13]
	}
	if len(f) == 3 {
		return f[1] + ":" + last
	}
	return last
}

func (b *bench) get(path string, into any) {
	resp, err := http.Get("http://" + b.host + path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer resp.Body.Close()
	if into != nil {
		_ = json.NewDecoder(resp.Body).Decode(into)
	}
}

func (b *bench) metrics() map[string]float64 {
	out := map[string]float64{}
	for name, c := range b.counters {
		ch := make(chan prometheus.Metric, 16)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if m.Write(&d) == nil && d.Counter != nil {
				out[name] += d.Counter.GetValue()
			}
		}
	}
	return out
}

func descName(d *prometheus.Desc) string {
	s := d.String()
	if i := strings.Index(s, `fqName: "`); i >= 0 {
		s = s[i+len(`fqName: "`):]
		return s[:strings.Index(s, `"`)]
	}
	return s
}

func parallelPulls(ctx context.Context, svc *imagesvc.Service, n int, refs ...string) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = svc.Pull(ctx, refs[i%len(refs)], imagesvc.Auth{})
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) == nil
}

func procStatus(field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func unmountBelow(dir string) {
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var below []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			below = append(below, f[4])
		}
	}
	for i := len(below) - 1; i >= 0; i-- {
		_ = syscall.Unmount(below[i], syscall.MNT_DETACH)
	}
}
