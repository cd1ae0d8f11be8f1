package imagesvc

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/pause"
	"github.com/noded-dev/noded/internal/storage"
)

// fakePauseStore is an image store that holds names only: Import stores
// the image its manifest names, Pull a fixed image.
type fakePauseStore struct {
	mu         sync.Mutex
	images     map[string]LocalImage
	resolveErr error
	pullErr    error
	// lose makes Import and Pull succeed without storing anything.
	lose    bool
	imports []map[digest.Digest][]byte
	pulls   []string
}

func (f *fakePauseStore) Resolve(_ context.Context, ref string) (LocalImage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resolveErr != nil {
		return LocalImage{}, f.resolveErr
	}
	img, ok := f.images[ref]
	if !ok {
		return LocalImage{}, errdefs.NotFound("image %q not found", ref)
	}
	return img, nil
}

func (f *fakePauseStore) Pull(_ context.Context, ref string, _ Auth) (storage.ImageID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls = append(f.pulls, ref)
	if f.pullErr != nil {
		return "", f.pullErr
	}
	if !f.lose {
		f.images[ref] = LocalImage{ID: "pulled", Name: ref}
	}
	return "pulled", nil
}

func (f *fakePauseStore) Import(_ context.Context, name string, manifest []byte, blobs map[digest.Digest][]byte) (storage.ImageID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imports = append(f.imports, blobs)
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return "", err
	}
	id := storage.ImageIDFromDigest(m.Config.Digest)
	if _, ok := blobs[m.Config.Digest]; !ok {
		return "", errors.New("config blob missing")
	}
	for _, l := range m.Layers {
		if _, ok := blobs[l.Digest]; !ok {
			return "", errors.New("layer blob missing")
		}
	}
	if !f.lose {
		f.images[name] = LocalImage{ID: id, Name: name}
	}
	return id, nil
}

func TestPauseImages(t *testing.T) {
	const builtinRef = "localhost/noded/pause:builtin"
	binary := []byte("\x7fELF a pause binary\n")
	dir := t.TempDir()
	binPath := filepath.Join(dir, "noded-pause")
	if err := os.WriteFile(binPath, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	built, err := pause.Build(binary)
	if err != nil {
		t.Fatal(err)
	}
	builtinID := storage.ImageIDFromDigest(built.ConfigDigest)
	builtin := PauseOptions{Ref: builtinRef, Builtin: true, BinaryPath: binPath}
	registry := PauseOptions{Ref: "registry.k8s.io/pause:3.10"}

	tests := []struct {
		desc    string
		opts    PauseOptions
		store   *fakePauseStore
		wantID  storage.ImageID
		wantErr string
		// wantSelfConfined: the built-in binary confines itself.
		wantSelfConfined bool
		wantImports      int
		wantPulls        int
	}{
		{
			desc: "built-in image is made on first use", opts: builtin,
			wantID: builtinID, wantSelfConfined: true, wantImports: 1,
		},
		{
			desc: "built-in image already there", opts: builtin,
			store:  &fakePauseStore{images: map[string]LocalImage{builtinRef: {ID: builtinID, Name: builtinRef}}},
			wantID: builtinID, wantSelfConfined: true,
		},
		{
			desc: "another noded's built-in image is replaced", opts: builtin,
			store:  &fakePauseStore{images: map[string]LocalImage{builtinRef: {ID: "0123", Name: builtinRef}}},
			wantID: builtinID, wantSelfConfined: true, wantImports: 1,
		},
		{
			desc: "missing pause binary", opts: PauseOptions{Ref: builtinRef, Builtin: true, BinaryPath: filepath.Join(dir, "missing")},
			store:   &fakePauseStore{images: map[string]LocalImage{builtinRef: {ID: builtinID}}},
			wantErr: "read pause binary",
		},
		{
			desc: "configured image is pulled on first use", opts: registry,
			wantID: "pulled", wantPulls: 1,
		},
		{
			desc: "configured image already there is not pulled", opts: registry,
			store:  &fakePauseStore{images: map[string]LocalImage{registry.Ref: {ID: "local", Name: registry.Ref}}},
			wantID: "local",
		},
		{
			desc: "failed pull", opts: registry,
			store:   &fakePauseStore{pullErr: errdefs.Unavailable("registry down")},
			wantErr: "pulling the pause image registry.k8s.io/pause:3.10: registry down", wantPulls: 1,
		},
		{
			desc: "lookup error other than not found", opts: registry,
			store:   &fakePauseStore{resolveErr: errors.New("store broken")},
			wantErr: "store broken",
		},
		{
			desc: "image gone right after it was made", opts: builtin,
			store:   &fakePauseStore{lose: true},
			wantErr: "not usable after it was made", wantImports: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			store := tt.store
			if store == nil {
				store = &fakePauseStore{}
			}
			if store.images == nil {
				store.images = map[string]LocalImage{}
			}
			p := newPauseImages(store, tt.opts)
			img, err := p.Get(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if img.ID != tt.wantID || img.SelfConfined != tt.wantSelfConfined || img.Name != tt.opts.Ref {
					t.Errorf("got %+v, want ID %s, self-confined %v, name %s", img, tt.wantID, tt.wantSelfConfined, tt.opts.Ref)
				}
			}
			if len(store.imports) != tt.wantImports || len(store.pulls) != tt.wantPulls {
				t.Errorf("%d imports and %d pulls, want %d and %d", len(store.imports), len(store.pulls), tt.wantImports, tt.wantPulls)
			}
			if tt.wantImports > 0 {
				blobs := store.imports[0]
				if len(blobs) != 2 || string(blobs[built.DiffID]) != string(built.Layer) || string(blobs[built.ConfigDigest]) != string(built.Config) {
					t.Errorf("imported blobs are not the built-in image's layer and config")
				}
			}
		})
	}
}

// Concurrent first pods make the image once.
func TestPauseImagesMadeOnce(t *testing.T) {
	store := &fakePauseStore{images: map[string]LocalImage{}}
	p := newPauseImages(store, PauseOptions{Ref: "registry.k8s.io/pause:3.10"})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Get(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(store.pulls) != 1 {
		t.Errorf("%d pulls, want 1", len(store.pulls))
	}
}
