package procfs

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// statLine builds a /proc/PID/stat line as the kernel writes it (52
// fields), with the given command name, state, parent and start time.
func statLine(comm, state, ppid, start string) string {
	f := make([]string, 52)
	for i := range f {
		f[i] = "0"
	}
	f[0], f[1], f[2], f[3], f[21] = "4242", "("+comm+")", state, ppid, start
	return strings.Join(f, " ") + "\n"
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Stat
		wantErr bool
	}{
		{name: "plain", line: statLine("sleep", "S", "1", "12345"),
			want: Stat{Comm: "sleep", State: 'S', PPid: 1, StartTime: 12345}},
		{name: "spaces in the name", line: statLine("my prog 1 2 3", "R", "7", "99"),
			want: Stat{Comm: "my prog 1 2 3", State: 'R', PPid: 7, StartTime: 99}},
		{name: "parentheses in the name", line: statLine("a) b (c) Z 1", "Z", "2", "18446744073709551615"),
			want: Stat{Comm: "a) b (c) Z 1", State: 'Z', PPid: 2, StartTime: 1<<64 - 1}},
		{name: "empty name", line: statLine("", "I", "2", "5"),
			want: Stat{Comm: "", State: 'I', PPid: 2, StartTime: 5}},
		{name: "short line, as of a kernel that wrote fewer fields", line: "1 (init) S 0 1 1 0 -1\n", wantErr: true},
		{name: "no parentheses", line: "1 init S 0 1 1", wantErr: true},
		{name: "only an opening parenthesis", line: "1 (init S 0 1 1", wantErr: true},
		{name: "start time not a number", line: statLine("x", "S", "1", "soon"), wantErr: true},
		{name: "state of two letters", line: statLine("x", "SS", "1", "5"), wantErr: true},
		{name: "empty", line: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestExited(t *testing.T) {
	for _, tc := range []struct {
		state byte
		want  bool
	}{{'R', false}, {'S', false}, {'D', false}, {'T', false}, {'I', false}, {'Z', true}, {'X', true}} {
		t.Run(string(tc.state), func(t *testing.T) {
			if got := (Stat{State: tc.state}).Exited(); got != tc.want {
				t.Fatalf("Exited() = %v, want %v", got, tc.want)
			}
		})
	}
}

// The live functions, on this process and on processes that are gone.
func TestLive(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil || self == 0 {
		t.Fatalf("own start time %d, %v", self, err)
	}
	// A child that exited and was reaped; its pid is not reused this soon.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	// A zombie: exited, not reaped yet.
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = zombie.Wait() }()
	waitZombie(t, zombie.Process.Pid)

	tests := []struct {
		name  string
		pid   int
		start uint64
		alive bool
	}{
		{name: "this process", pid: os.Getpid(), alive: true},
		{name: "this process with its start time", pid: os.Getpid(), start: self, alive: true},
		{name: "this pid with another start time (recycled)", pid: os.Getpid(), start: self + 1},
		{name: "reaped child", pid: gone.Process.Pid},
		{name: "zombie child", pid: zombie.Process.Pid},
		{name: "pid 0", pid: 0},
		{name: "negative pid", pid: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Alive(tc.pid, tc.start); got != tc.alive {
				t.Fatalf("Alive(%d, %d) = %v, want %v", tc.pid, tc.start, got, tc.alive)
			}
		})
	}
	t.Run("a missing process is ErrNotExist", func(t *testing.T) {
		if _, err := ReadStat(gone.Process.Pid); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("the parent of a child is this process", func(t *testing.T) {
		st, err := ReadStat(zombie.Process.Pid)
		if err != nil || st.PPid != os.Getpid() || st.Comm != "true" {
			t.Fatalf("got %+v, %v", st, err)
		}
	})
}

func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := ReadStat(pid); err == nil && st.State == 'Z' {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d never became a zombie", pid)
}

func TestParseBusyCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		// user 100 + nice 10 + system 50 + irq 5 + softirq 5 + steal 30
		// (idle 1000 and iowait 20 and guest 7 not counted) = 200 ticks.
		{"counts the busy fields", "cpu  100 10 50 1000 20 5 5 30 7 0\ncpu0 1 2 3\n", 2 * time.Second, false},
		{"old kernels have fewer fields", "cpu 100 0 100 5 0\n", 2 * time.Second, false},
		{"not the cpu line", "intr 1 2 3\n", 0, true},
		{"garbage", "cpu 1 x 3 4 5\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBusyCPU(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseBusyCPU = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := BusyCPU(); err != nil {
		t.Fatalf("BusyCPU on this machine: %v", err)
	}
}
