package procs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MarkerEnv is set to the cluster's state directory in the environment of
// every process the local cluster starts, so cleanup can find them all.
const MarkerEnv = "AMBIENT_LOCALCLUSTER"

// Spec describes a detached process.
type Spec struct {
	Name    string   // used for the pid and log file names
	Argv    []string // program and arguments
	Env     []string // extra environment
	Netns   string   // optional network namespace path: the process runs under nsenter --net=
	LogDir  string
	PidDir  string
	Marker  string // value of MarkerEnv
	WorkDir string
}

// Start launches the process in its own session and returns its pid.
func Start(s Spec) (int, error) {
	argv := s.Argv
	if s.Netns != "" {
		argv = append([]string{"nsenter", "--net=" + s.Netns, "--"}, argv...)
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(filepath.Join(s.LogDir, s.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log for %s: %w", s.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), s.Env...), MarkerEnv+"="+s.Marker)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.WorkDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", s.Name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.MkdirAll(s.PidDir, 0o755); err != nil {
		return pid, err
	}
	return pid, os.WriteFile(filepath.Join(s.PidDir, s.Name+".pid"), []byte(strconv.Itoa(pid)), 0o644)
}

// Alive reports whether pid is a running (not zombie) process.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// ReadPid returns the pid recorded for name, or 0.
func ReadPid(pidDir, name string) int {
	b, err := os.ReadFile(filepath.Join(pidDir, name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Marked returns the pids of all processes whose environment carries
// MarkerEnv=marker (or any value when marker is empty). A process that is
// still inside execve shows an empty environment and is not listed yet.
func Marked(marker string) []int {
	want := []byte(MarkerEnv + "=" + marker)
	prefix := []byte(MarkerEnv + "=")
	self := os.Getpid()
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if (marker == "" && bytes.HasPrefix(kv, prefix)) || bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// Stop sends SIGTERM to each pid (and its process group), waits up to grace
// for them to exit, then SIGKILLs what is left.
func Stop(pids []int, grace time.Duration) error {
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		alive := false
		for _, pid := range pids {
			if Alive(pid) {
				alive = true
				break
			}
		}
		if !alive {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	var left []string
	for _, pid := range pids {
		if Alive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			left = append(left, strconv.Itoa(pid))
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, pid := range pids {
		if Alive(pid) {
			return errors.New("processes survived SIGKILL: " + strings.Join(left, ","))
		}
	}
	return nil
}
