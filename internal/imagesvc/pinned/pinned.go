// Package pinned matches image names against the patterns of the
// pinned-images setting: images the kubelet's garbage collection must
// leave alone (ImageStatus and ListImages report them with pinned set).
//
// The patterns are CRI-O's (pinned_images): an exact name, a glob with
// one "*" at the end ("registry.example/team/*": names that start with
// what comes before it), or a keyword between two "*" ("*mirror*": names
// that contain it). Matching ignores case, as in CRI-O. CRI-O's glob
// matches its prefix anywhere in the name (its regular expression has no
// anchor); here it matches at the start, which is what its documentation
// says. A "*" anywhere else ("*:latest", "a*b") is refused: CRI-O would
// take it as a literal star that no image name can hold, so the pattern
// could never pin anything.
//
// The package has no dependency, so that the configuration can check
// patterns with the code that applies them.
package pinned

import (
	"fmt"
	"strings"
)

// Matcher matches names against compiled patterns. The zero value pins
// nothing.
type Matcher struct {
	exact    []string
	prefixes []string
	keywords []string
}

// Check refuses a pattern the matcher would not apply as written.
func Check(pattern string) error {
	_, _, err := parse(pattern)
	return err
}

type kind int

const (
	exact kind = iota
	prefix
	keyword
)

// parse splits a pattern into its kind and literal text (lower case).
func parse(pattern string) (kind, string, error) {
	if pattern == "" {
		return 0, "", fmt.Errorf("empty pinned image pattern")
	}
	k, text := exact, pattern
	switch {
	case len(pattern) >= 2 && strings.HasPrefix(pattern, "*") && strings.HasSuffix(pattern, "*"):
		k, text = keyword, pattern[1:len(pattern)-1]
	case strings.HasSuffix(pattern, "*"):
		k, text = prefix, pattern[:len(pattern)-1]
	}
	if strings.Contains(text, "*") {
		return 0, "", fmt.Errorf("pinned image pattern %q: \"*\" may only end it (a prefix) or open and end it (a keyword)", pattern)
	}
	return k, strings.ToLower(text), nil
}

// New compiles patterns; it fails on the first one Check refuses.
func New(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		k, text, err := parse(p)
		if err != nil {
			return nil, err
		}
		switch k {
		case exact:
			m.exact = append(m.exact, text)
		case prefix:
			m.prefixes = append(m.prefixes, text)
		case keyword:
			m.keywords = append(m.keywords, text)
		}
	}
	return m, nil
}

// Match reports whether a pattern pins name.
func (m *Matcher) Match(name string) bool {
	if m == nil {
		return false
	}
	name = strings.ToLower(name)
	for _, e := range m.exact {
		if name == e {
			return true
		}
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, k := range m.keywords {
		if strings.Contains(name, k) {
			return true
		}
	}
	return false
}
