package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FsUsage is the disk usage of one class of data on a filesystem.
type FsUsage struct {
	// Mountpoint is a directory on the filesystem holding the data; the
	// kubelet resolves it to the device whose capacity and free space
	// (statfs) drive eviction and image garbage collection.
	Mountpoint string
	// UsedBytes are allocated bytes (st_blocks × 512, each inode once), so
	// sparse files and small-file overhead count as the disk sees them.
	UsedBytes uint64
	// InodesUsed counts distinct inodes.
	InodesUsed uint64
	Timestamp  time.Time
}

type usage struct{ bytes, inodes uint64 }

func (u *usage) add(o usage) { u.bytes += o.bytes; u.inodes += o.inodes }

// FsInfo reports what images and what containers use on the graph root's
// filesystem.
//
// Images: every read-only layer (its driver directory: content, links,
// work dir) plus the store's metadata (image records, manifests, configs,
// tar-split data) and noded's pull temporary files. Containers: each
// container's writable layer and its per-container directory.
//
// Read-only layers never change, so each one is walked once and its usage
// cached until it is deleted; writable layers and metadata are walked on
// every call. Walks count allocated blocks, never follow symlinks and
// never cross into another filesystem (e.g. a mounted rootfs).
func (s *Store) FsInfo() (images, containers FsUsage, err error) {
	s.fsMu.Lock()
	defer s.fsMu.Unlock()

	layers, err := s.s.Layers()
	if err != nil {
		return images, containers, mapErr(err, "listing layers")
	}
	ctrs, err := s.s.Containers()
	if err != nil {
		return images, containers, mapErr(err, "listing containers")
	}
	writable := make(map[string]bool, len(ctrs))
	for _, c := range ctrs {
		writable[c.LayerID] = true
	}

	var img, ctr usage
	skip := map[string]bool{}
	cache := make(map[LayerID]usage, len(layers))
	for _, l := range layers {
		dir := s.layerDir(l.ID)
		if dir == "" {
			continue
		}
		skip[dir] = true
		if writable[l.ID] {
			u, err := walkUsage(dir, nil)
			if err != nil {
				return images, containers, err
			}
			ctr.add(u)
			continue
		}
		u, ok := s.fsCache[LayerID(l.ID)]
		if !ok {
			if u, err = walkUsage(dir, nil); err != nil {
				return images, containers, err
			}
		}
		cache[LayerID(l.ID)] = u
		img.add(u)
	}
	s.fsCache = cache // drops deleted layers

	ctrMeta := filepath.Join(s.root, s.driver+"-containers")
	for _, c := range ctrs {
		dir := filepath.Join(ctrMeta, c.ID)
		skip[dir] = true
		u, err := walkUsage(dir, nil)
		if err != nil {
			return images, containers, err
		}
		ctr.add(u)
	}
	// Everything else under the graph root is image data and metadata.
	rest, err := walkUsage(s.root, func(p string) bool { return skip[p] })
	if err != nil {
		return images, containers, err
	}
	img.add(rest)

	now := time.Now()
	images = FsUsage{Mountpoint: s.root, UsedBytes: img.bytes, InodesUsed: img.inodes, Timestamp: now}
	containers = FsUsage{Mountpoint: s.root, UsedBytes: ctr.bytes, InodesUsed: ctr.inodes, Timestamp: now}
	return images, containers, nil
}

// layerDir is the driver's directory of a layer, "" for drivers whose
// layout noded does not know (their layers then count as metadata).
func (s *Store) layerDir(id string) string {
	switch s.driver {
	case "overlay", "overlay2":
		return filepath.Join(s.root, "overlay", id)
	case "vfs":
		return filepath.Join(s.root, "vfs", "dir", id)
	}
	return ""
}

// walkUsage sums allocated bytes and distinct inodes below root (root
// included), skipping the subtrees skip selects and any directory on
// another device. A missing root counts as empty; files vanishing during
// the walk are ignored.
func walkUsage(root string, skip func(string) bool) (usage, error) {
	var u usage
	var rootDev uint64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p != root && skip != nil && skip(p) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		dev := uint64(st.Dev) //nolint:unconvert // int type differs per architecture
		if p == root {
			rootDev = dev
		} else if dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			key := [2]uint64{dev, st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		u.inodes++
		u.bytes += uint64(st.Blocks) * 512 //nolint:gosec // st_blocks is never negative
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return u, err
}
