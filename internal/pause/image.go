// Package pause builds noded's built-in pause image: a one-layer OCI image
// that holds only the static pause binary (pause.c in this directory, built
// as bin/noded-pause). The image lets pod sandboxes start on a node that has
// no registry access.
//
// The build is deterministic: the same binary always gives the same layer,
// config and manifest bytes and so the same digests (the image ID is the
// config digest), whichever machine or time it runs at. The package is pure
// Go and has no storage dependency; the image service commits the pieces
// into containers/storage.
package pause

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	// EntryName is the layer entry holding the binary: /pause in the
	// container's root filesystem.
	EntryName = "pause"
	// Entrypoint is the path the image config runs.
	Entrypoint = "/" + EntryName
	// User is the user and group the pause process runs as (nobody).
	User = "65535:65535"
	// EntryMode is the mode of /pause in the layer.
	EntryMode = 0o755
	// CreatedBy is the history entry's created_by.
	CreatedBy = "noded built-in pause image"
)

// Created is the fixed creation time of the image and of the layer's entry:
// the Unix epoch, so digests never depend on when the image was built.
var Created = time.Unix(0, 0).UTC()

// Image is the built-in pause image, ready to be stored: the layer, the
// config and the manifest, each as its exact bytes and as the parsed OCI
// struct those bytes encode.
type Image struct {
	// Layer is the uncompressed layer tar (media type
	// ocispec.MediaTypeImageLayer). Since it is not compressed its digest
	// is also its DiffID.
	Layer []byte
	// DiffID is the sha256 digest of Layer.
	DiffID digest.Digest

	// Config is the image config JSON; ConfigDigest is its digest and the
	// image ID (ConfigDigest.Encoded()) in containers/storage.
	Config       []byte
	ConfigDigest digest.Digest
	ImageConfig  ocispec.Image

	// Manifest is the OCI image manifest JSON referring to Config and Layer.
	Manifest       []byte
	ManifestDigest digest.Digest
	ImageManifest  ocispec.Manifest
}

// BuildFromFile reads the pause binary at path and builds the image.
func BuildFromFile(path string) (*Image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pause binary: %w", err)
	}
	return Build(bin)
}

// Build builds the image around the given pause binary, for linux and the
// architecture noded was built for (runtime.GOARCH).
func Build(binary []byte) (*Image, error) {
	return build(binary, runtime.GOARCH)
}

func build(binary []byte, arch string) (*Image, error) {
	if len(binary) == 0 {
		return nil, fmt.Errorf("pause binary is empty")
	}
	layer, err := layerTar(binary)
	if err != nil {
		return nil, err
	}
	img := &Image{Layer: layer, DiffID: digest.FromBytes(layer)}

	created := Created
	img.ImageConfig = ocispec.Image{
		Created: &created,
		Platform: ocispec.Platform{
			Architecture: arch,
			OS:           "linux",
		},
		Config: ocispec.ImageConfig{
			User:       User,
			Entrypoint: []string{Entrypoint},
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{
			Type:    "layers",
			DiffIDs: []digest.Digest{img.DiffID},
		},
		History: []ocispec.History{{
			Created:   &created,
			CreatedBy: CreatedBy,
		}},
	}
	if img.Config, err = json.Marshal(img.ImageConfig); err != nil {
		return nil, fmt.Errorf("marshal pause image config: %w", err)
	}
	img.ConfigDigest = digest.FromBytes(img.Config)

	img.ImageManifest = ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    img.ConfigDigest,
			Size:      int64(len(img.Config)),
		},
		Layers: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageLayer,
			Digest:    img.DiffID,
			Size:      int64(len(img.Layer)),
		}},
	}
	if img.Manifest, err = json.Marshal(img.ImageManifest); err != nil {
		return nil, fmt.Errorf("marshal pause image manifest: %w", err)
	}
	img.ManifestDigest = digest.FromBytes(img.Manifest)
	return img, nil
}

// layerTar returns a tar with the single regular file "pause", owned by
// root, mode 0755, dated Created. The USTAR format carries no access or
// change times, so nothing else in the archive can vary.
func layerTar(binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     EntryName,
		Mode:     EntryMode,
		Uid:      0,
		Gid:      0,
		Uname:    "root",
		Gname:    "root",
		Size:     int64(len(binary)),
		ModTime:  Created,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("pause layer: %w", err)
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, fmt.Errorf("pause layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pause layer: %w", err)
	}
	return buf.Bytes(), nil
}
