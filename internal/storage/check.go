package storage

import (
	"fmt"
	"sort"

	cstorage "go.podman.io/storage"
)

// Damage is what a store check found: the IDs of the damaged layers,
// images (including those on a damaged layer) and containers (including
// those on a damaged image), each with what is wrong.
type Damage struct {
	Layers     map[string][]error
	Images     map[string][]error
	Containers map[string][]error
}

// Empty reports whether the check found nothing.
func (d Damage) Empty() bool {
	return len(d.Layers) == 0 && len(d.Images) == 0 && len(d.Containers) == 0
}

// Lines describes the damage, one line per item, sorted.
func (d Damage) Lines() []string {
	var out []string
	for kind, m := range map[string]map[string][]error{"layer": d.Layers, "image": d.Images, "container": d.Containers} {
		for id, errs := range m {
			out = append(out, fmt.Sprintf("%s %s: %v", kind, id, errs))
		}
	}
	sort.Strings(out)
	return out
}

// Check runs containers/storage's check of the whole store, its quick
// checks (cstorage.CheckMost: each layer's content against its recorded
// digest, mountability, the images' and containers' data; not the slow
// comparison of every file), and with repair removes what failed it:
// damaged containers, damaged images and their layers, damaged layers.
// Pulling the image again restores it. It returns what it found, and the
// errors of the removals that failed.
//
// It reads every layer: seconds per gigabyte of images. noded runs it at a
// start after a power loss (internal/boot), and `noded check` offline.
func (s *Store) Check(repair bool) (Damage, []error, error) {
	report, err := s.s.Check(cstorage.CheckMost())
	if err != nil {
		return Damage{}, nil, fmt.Errorf("checking containers/storage: %w", err)
	}
	d := Damage{Layers: map[string][]error{}, Images: map[string][]error{}, Containers: map[string][]error{}}
	for _, m := range []map[string][]error{report.Layers, report.ROLayers} {
		for id, errs := range m {
			d.Layers[id] = append(d.Layers[id], errs...)
		}
	}
	for _, m := range []map[string][]error{report.Images, report.ROImages} {
		for id, errs := range m {
			d.Images[id] = append(d.Images[id], errs...)
		}
	}
	for id, errs := range report.Containers {
		d.Containers[id] = errs
	}
	if !repair || d.Empty() {
		return d, nil, nil
	}
	return d, s.s.Repair(report, cstorage.RepairEverything()), nil
}
