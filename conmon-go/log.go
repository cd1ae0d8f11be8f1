package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// A tiny leveled logger: the monitor avoids logging libraries to stay small.
// Lines go to stderr, which is the monitor log file:
//
//	2026-01-02T03:04:05.123456789Z level=info pod=… container=… msg="…"
type logger struct {
	fields string
	level  *int
}

const (
	levelDebug = iota
	levelInfo
	levelWarn
	levelError
)

var logMu sync.Mutex

func newLogger(level string) *logger {
	l := levelInfo
	switch strings.ToLower(level) {
	case "debug", "trace":
		l = levelDebug
	case "warn", "warning":
		l = levelWarn
	case "error", "fatal", "panic":
		l = levelError
	}
	return &logger{level: &l}
}

// with returns a logger that adds key=value to every line.
func (l *logger) with(key string, value any) *logger {
	return &logger{fields: l.fields + fmt.Sprintf(" %s=%v", key, value), level: l.level}
}

func (l *logger) logf(level int, name, format string, args ...any) {
	if level < *l.level {
		return
	}
	line := fmt.Sprintf("%s level=%s%s msg=%q\n", time.Now().UTC().Format(time.RFC3339Nano), name, l.fields, fmt.Sprintf(format, args...))
	logMu.Lock()
	os.Stderr.WriteString(line)
	logMu.Unlock()
}

func (l *logger) Debugf(format string, args ...any) { l.logf(levelDebug, "debug", format, args...) }
func (l *logger) Infof(format string, args ...any)  { l.logf(levelInfo, "info", format, args...) }
func (l *logger) Warnf(format string, args ...any)  { l.logf(levelWarn, "warning", format, args...) }
func (l *logger) Errorf(format string, args ...any) { l.logf(levelError, "error", format, args...) }
