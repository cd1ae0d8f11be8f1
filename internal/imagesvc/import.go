package imagesvc

import (
	"bytes"
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
)

// Import commits an image whose manifest and blobs (config and layers,
// compressed or not) the caller holds in memory, such as the built-in
// pause image, and names it name. It goes through the same commit as a
// pull (layers shared, digests verified) without any network access.
func (s *committer) Import(ctx context.Context, name string, manifestBlob []byte, blobs map[digest.Digest][]byte) (storage.ImageID, error) {
	named, err := parseReference(name)
	if err != nil {
		return "", err
	}
	named = reference.TagNameOnly(named)
	mDigest, err := manifest.Digest(manifestBlob)
	if err != nil {
		return "", errdefs.InvalidArgument("manifest: %v", err)
	}
	src := newBlobSource("", "local import", "import\x00"+mDigest.String(),
		func(_ context.Context, info types.BlobInfo) (io.ReadCloser, int64, error) {
			b, ok := blobs[info.Digest]
			if !ok {
				return nil, 0, errdefs.NotFound("blob %s is not part of the imported image", info.Digest)
			}
			return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
		}, nil)
	defer src.release()
	p, err := planFromManifest(manifestBlob, "", mDigest, src)
	if err != nil {
		return "", err
	}
	names := []string{}
	if isTagged(named) {
		names = append(names, named.String())
	}
	if digested, err := reference.WithDigest(reference.TrimNamed(named), mDigest); err == nil {
		names = append(names, digested.String())
	}
	if err := s.commitAndName(ctx, p, names, map[digest.Digest][]byte{mDigest: manifestBlob}); err != nil {
		return "", err
	}
	log.FromContext(ctx).WithFields(map[string]any{"image": named.String(), "id": p.id.String()}).Info("image imported")
	return p.id, nil
}
