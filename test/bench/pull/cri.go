package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/imagesvc/regtest"
	"github.com/noded-dev/noded/test/bench/peer"
)

// criSamples are one runtime's figures over the trials.
type criSamples struct {
	one, many   []float64 // s
	manyOnce    bool      // every blob and the manifest fetched once in every many-pull
	oneOnce     bool
	maxBlobGets int
	daemonAfter float64 // MiB
}

// runCRI is the CRI mode (-endpoint, -compare): the same image pulled
// through PullImage, the kubelet's call, by each runtime in alternating
// trials: one pull, then concurrency pulls at once, each after removing
// the image (RemoveImage) and dropping the page cache, with the counting
// registry's GETs per blob. The image is ADDR/bench/big:1 on 127.0.0.1
// over plain HTTP: a runtime at -endpoint must be configured to pull from
// there (noded: a registries.conf entry with insecure = true for
// 127.0.0.1; containerd: a registry mirror or hosts.toml for it).
func runCRI(sizeMB, nLayers, concurrency, trials int, rf peer.Flags) error {
	reg, stopRegistry, err := startRegistry(sizeMB, nLayers)
	if err != nil {
		return err
	}
	defer stopRegistry()
	ctx := context.Background()
	b, err := peer.Prepare(ctx, "bench-pull")
	if err != nil {
		return err
	}
	defer b.Close()
	conf := filepath.Join(b.Dir, "bench-registries.conf")
	if err := regtest.WriteRegistriesConf(conf, reg.Host); err != nil {
		return err
	}
	rts, err := b.Runtimes(ctx, peer.Setup{Flags: rf, Net: 248, RegistriesConf: conf, Mirrors: map[string]string{reg.Host: "http://" + reg.Host}})
	if err != nil {
		return err
	}
	peer.PrintRuntimes(rts, trials)
	big := reg.Images["big"]
	fmt.Printf("image %s (%d MB uncompressed, %d gzip layers) from a counting registry (child process); each pull after RemoveImage and dropping the page cache\n", big.Ref, sizeMB, nLayers)
	bb := &bench{host: reg.Host}
	res := map[*peer.Runtime]*criSamples{}
	for _, r := range rts {
		res[r] = &criSamples{oneOnce: true, manyOnce: true}
	}
	for t := range trials {
		for _, r := range peer.Order(rts, t) {
			s := res[r]
			one, once1, _, err := bb.criPulls(ctx, r, big.Ref, 1)
			if err != nil {
				return err
			}
			many, once20, maxGets, err := bb.criPulls(ctx, r, big.Ref, concurrency)
			if err != nil {
				return err
			}
			s.one, s.many = append(s.one, one.Seconds()), append(s.many, many.Seconds())
			s.oneOnce, s.manyOnce = s.oneOnce && once1, s.manyOnce && once20
			s.maxBlobGets = max(s.maxBlobGets, maxGets)
			fmt.Printf("trial %d %-15s one pull %.3fs (each blob once: %v) | %d at once %.3fs (each blob once: %v, most GETs of one blob %d) | loadavg %s\n",
				t+1, r.Name, one.Seconds(), once1, concurrency, many.Seconds(), once20, maxGets, peer.Loadavg())
		}
	}
	time.Sleep(2 * time.Second)
	for _, r := range rts {
		res[r].daemonAfter = math.NaN()
		if m, err := peer.MemOf(r.Pid); r.Pid > 0 && err == nil {
			res[r].daemonAfter = peer.MiB(m.RSS)
		}
	}
	col := func(f func(s *criSamples) float64) []float64 {
		v := make([]float64, len(rts))
		for i, r := range rts {
			v[i] = f(res[r])
		}
		return v
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	fmt.Printf("\nmedian of %d trials (loadavg %s)\n", trials, peer.Loadavg())
	peer.PrintTable(rts, []peer.Row{
		{Figure: "one pull (s)", Values: col(func(s *criSamples) float64 { return peer.Median(s.one) }), Format: "%.3f"},
		{Figure: fmt.Sprintf("%d concurrent pulls (s)", concurrency), Values: col(func(s *criSamples) float64 { return peer.Median(s.many) }), Format: "%.3f"},
		{Figure: fmt.Sprintf("%d concurrent / one pull", concurrency), Values: col(func(s *criSamples) float64 { return peer.Median(s.many) / peer.Median(s.one) }), Format: "%.2f"},
		{Figure: fmt.Sprintf("most GETs of one blob, %d at once", concurrency), Values: col(func(s *criSamples) float64 { return float64(s.maxBlobGets) }), Format: "%.0f"},
		{Figure: "every blob fetched once, all pulls (1 = yes)", Values: col(func(s *criSamples) float64 { return b2f(s.oneOnce && s.manyOnce) }), Format: "%.0f", HigherBetter: true},
		{Figure: "daemon RSS after the pulls (MiB)", Values: col(func(s *criSamples) float64 { return s.daemonAfter }), Format: "%.1f"},
	})
	return nil
}

// criPulls removes ref if present, drops the page cache, resets the
// registry's counters and times n PullImage calls at once; it reports
// whether every blob and manifest was fetched exactly once, and the most
// GETs of one blob.
func (b *bench) criPulls(ctx context.Context, r *peer.Runtime, ref string, n int) (time.Duration, bool, int, error) {
	if _, err := r.Img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return 0, false, 0, fmt.Errorf("%s: RemoveImage: %w", r.Name, err)
	}
	dropCaches()
	b.get("/_bench/reset", nil)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { errs[i] = peer.PullImage(ctx, r, ref) })
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, false, 0, err
	}
	var st stats
	b.get("/_bench/stats", &st)
	once, most := len(st.Gets) > 0, 0
	for _, g := range st.Gets {
		once = once && g == 1
		most = max(most, g)
	}
	return wall, once, most, nil
}
