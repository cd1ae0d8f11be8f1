//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/imagesvc/regtest"
)

// imageRegistry starts an in-process registry with one image pushed as
// it/app:1 and it/copy:1, and returns it with the flags that point noded
// at it (registries.conf marking it insecure, an accept-anything policy).
func imageRegistry(t *testing.T) (*regtest.Registry, v1.Image, []string) {
	t.Helper()
	reg := regtest.New()
	t.Cleanup(reg.Close)
	var layers []v1.Layer
	for i := int64(1); i <= 2; i++ {
		l, err := regtest.Layer(i, "dir"+string(rune('0'+i)), 2, 32<<10)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := regtest.Image(runtime.GOARCH, "1234", layers...)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"it/app:1", "it/copy:1"} {
		if err := reg.Push(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := regtest.WriteRegistriesConf(conf, reg.Host); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return reg, img, []string{"--registries-conf", conf, "--signature-policy", policy}
}

// TestImagesOverGRPC drives the ImageService RPCs as the kubelet does.
func TestImagesOverGRPC(t *testing.T) {
	reg, img, args := imageRegistry(t)
	d := StartDaemon(t, DaemonOptions{Args: args})
	ic := d.Images(t)
	ctx := context.Background()
	cfg, _ := img.ConfigName()
	wantID := cfg.String()

	// Concurrent pulls under two names: one image, each blob fetched once.
	refs := []string{reg.Ref("it/app:1"), reg.Ref("it/copy:1")}
	var wg sync.WaitGroup
	got := make([]string, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: refs[i%2]}})
			got[i], errs[i] = resp.GetImageRef(), err
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != wantID {
			t.Fatalf("pull %d: %q, %v; want %s", i, got[i], errs[i], wantID)
		}
	}
	m, _ := img.Manifest()
	for _, l := range append(m.Layers, m.Config) {
		if n := reg.BlobGets(l.Digest.String()); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", l.Digest, n)
		}
	}

	st, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: refs[0]}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetImage().GetId() != wantID || len(st.GetImage().GetRepoTags()) != 2 || st.GetImage().GetUid().GetValue() != 1234 || st.GetInfo()["info"] == "" {
		t.Errorf("ImageStatus = %v", st)
	}
	absent, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("it/none:1")}})
	if err != nil || absent.GetImage() != nil {
		t.Errorf("status of an absent image: %v, %v", absent, err)
	}
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("it/none:1")}}); err == nil || !strings.Contains(err.Error(), reg.Host) {
		t.Errorf("pull of an unknown image: %v", err)
	}

	// Removing one tag keeps the image; removing by ID removes both names.
	if _, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: refs[1]}}); err != nil {
		t.Fatal(err)
	}
	list, err := ic.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.GetImages()) != 1 || len(list.GetImages()[0].GetRepoTags()) != 1 {
		t.Fatalf("after removing a tag: %v, %v", list, err)
	}
	if _, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: wantID}}); err != nil {
		t.Fatal(err)
	}
	if list, _ := ic.ListImages(ctx, &runtimeapi.ListImagesRequest{}); len(list.GetImages()) != 0 {
		t.Errorf("images left: %v", list)
	}
	fs, err := ic.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.GetImageFilesystems()) != 1 || fs.GetImageFilesystems()[0].GetFsId().GetMountpoint() == "" {
		t.Errorf("ImageFsInfo = %v, %v", fs, err)
	}
}

// TestImagesWithCrictl runs crictl's image commands against noded.
func TestImagesWithCrictl(t *testing.T) {
	reg, img, args := imageRegistry(t)
	d := StartDaemon(t, DaemonOptions{Args: args})
	ref := reg.Ref("it/app:1")
	cfg, _ := img.ConfigName()

	out, err := d.Crictl(t, "pull", ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, cfg.String()) {
		t.Errorf("crictl pull printed %q, want the image ID %s", out, cfg)
	}
	out, err = d.Crictl(t, "images")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, reg.Host+"/it/app") || !strings.Contains(out, cfg.Hex[:13]) {
		t.Errorf("crictl images:\n%s", out)
	}
	out, err = d.Crictl(t, "inspecti", ref)
	if err != nil {
		t.Fatal(err)
	}
	var inspect struct {
		Status struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
		} `json:"status"`
		Info map[string]any `json:"info"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &inspect); err != nil {
		t.Fatalf("crictl inspecti: %v\n%s", err, out)
	}
	if inspect.Status.ID != cfg.String() || len(inspect.Status.RepoTags) != 1 || inspect.Status.RepoTags[0] != ref {
		t.Errorf("crictl inspecti:\n%s", out)
	}
	out, err = d.Crictl(t, "imagefsinfo")
	if err != nil {
		t.Fatal(err)
	}
	var fsinfo struct {
		Status struct {
			ImageFilesystems []struct {
				UsedBytes struct {
					Value string `json:"value"`
				} `json:"usedBytes"`
			} `json:"imageFilesystems"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &fsinfo); err != nil || len(fsinfo.Status.ImageFilesystems) != 1 || fsinfo.Status.ImageFilesystems[0].UsedBytes.Value == "0" {
		t.Errorf("crictl imagefsinfo (%v):\n%s", err, out)
	}
	if _, err := d.Crictl(t, "rmi", ref); err != nil {
		t.Fatal(err)
	}
	out, err = d.Crictl(t, "images", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.Contains(line, "level=") {
			t.Errorf("images left after crictl rmi:\n%s", out)
			break
		}
	}
}

// jsonPart drops what crictl logs before its JSON output (the combined
// output also has its stderr).
func jsonPart(out string) string {
	if strings.HasPrefix(out, "{") {
		return out
	}
	if i := strings.Index(out, "\n{"); i >= 0 {
		return out[i+1:]
	}
	return out
}
