package procs

import (
	"os"
	"testing"
	"time"
)

func TestStartMarkedStop(t *testing.T) {
	dir := t.TempDir()
	marker := "test-" + t.Name() + "-" + time.Now().Format("150405.000000000")
	pid, err := Start(Spec{Name: "sleeper", Argv: []string{"sleep", "60"}, LogDir: dir, PidDir: dir, Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	if got := ReadPid(dir, "sleeper"); got != pid {
		t.Fatalf("ReadPid = %d, want %d", got, pid)
	}
	if !Alive(pid) {
		t.Fatal("started process is not alive")
	}
	// Start returns once execve has begun; the kernel fills in the new
	// image's environment a moment later, so /proc/<pid>/environ can still
	// be empty right after Start. Wait (bounded) for it to show.
	var found []int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		found = Marked(marker)
		if len(found) != 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(found) != 1 || found[0] != pid {
		t.Fatalf("Marked(%q) = %v, want [%d]", marker, found, pid)
	}
	if err := Stop(found, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The process was not our child (detached), but it may linger as a zombie of
	// init; Alive treats zombies as dead.
	if Alive(pid) {
		t.Fatal("process still alive after Stop")
	}
	if len(Marked(marker)) != 0 {
		t.Fatal("marked process still listed after Stop")
	}
	if _, err := os.Stat(dir + "/sleeper.log"); err != nil {
		t.Fatalf("no log file: %v", err)
	}
}

func TestAliveMissing(t *testing.T) {
	if Alive(1 << 30) {
		t.Fatal("Alive(nonexistent) = true")
	}
}
