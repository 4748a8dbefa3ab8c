package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Main runs the container described by the spec at specPath: it never
// returns on success (the process image is replaced by the container's
// binary). The daemon's main dispatches `run-container <spec.json>` here.
func Main(specPath string) error {
	s, err := ReadSpec(specPath)
	if err != nil {
		return err
	}
	return run(s, s.Argv)
}

// Exec runs argv with the namespaces, mounts, environment and working
// directory of the container described by the spec at specPath (an exec
// probe). It never returns on success. The daemon's main dispatches
// `exec-container <spec.json> <argv...>` here.
func Exec(specPath string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec-container needs a command after the spec path")
	}
	s, err := ReadSpec(specPath)
	if err != nil {
		return err
	}
	return run(s, argv)
}

// run does all namespace work on one locked OS thread and execve's from it:
// unshare(CLONE_NEWNS) and setns(CLONE_NEWNET) only affect the calling
// thread, and execve keeps that thread's namespaces for the new program.
// The thread is never unlocked: on error the process exits anyway.
func run(s Spec, argv []string) error {
	runtime.LockOSThread()
	if err := enter(s); err != nil {
		return err
	}
	path, err := LookPath(argv[0], s.Env)
	if err != nil {
		return err
	}
	if err := unix.Exec(path, argv, s.Env); err != nil {
		return fmt.Errorf("execve %s: %w", path, err)
	}
	return nil
}

func enter(s Spec) error {
	if len(s.Mounts) > 0 {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("unshare mount namespace (the node agent must run as root): %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make mounts private: %w", err)
		}
		rec := recorder{file: s.CreatedPathsFile}
		for _, m := range s.Mounts {
			if err := bind(m, &rec); err != nil {
				return err
			}
		}
	}
	if s.NetnsPath != "" {
		fd, err := unix.Open(s.NetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open pod network namespace %s: %w", s.NetnsPath, err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join pod network namespace %s: %w", s.NetnsPath, err)
		}
	}
	if s.Dir != "" {
		if err := unix.Chdir(s.Dir); err != nil {
			return fmt.Errorf("chdir to workingDir %s: %w", s.Dir, err)
		}
	}
	return nil
}

func bind(m Mount, rec *recorder) error {
	if !filepath.IsAbs(m.Target) {
		return fmt.Errorf("mount target %q is not absolute", m.Target)
	}
	fi, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("volume source for %s: %w", m.Target, err)
	}
	if fi.IsDir() {
		if err := rec.mkdirAll(m.Target); err != nil {
			return err
		}
	} else if err := rec.touch(m.Target); err != nil {
		return err
	}
	if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s at %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", m.Target, err)
		}
	}
	return nil
}

// recorder creates mount points and appends every path it creates to a file.
type recorder struct{ file string }

func (r *recorder) mkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for p := dir; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mount point %s: %w", p, err)
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create mount point %s: %w", missing[i], err)
		}
		if err := r.record(missing[i]); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) touch(file string) error {
	if _, err := os.Lstat(file); err == nil {
		return nil
	}
	if err := r.mkdirAll(filepath.Dir(file)); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create file mount point %s: %w", file, err)
	}
	f.Close()
	return r.record(file)
}

func (r *recorder) record(p string) error {
	if r.file == "" {
		return nil
	}
	f, err := os.OpenFile(r.file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("record created mount point: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.ReplaceAll(p, "\n", "") + "\n"); err != nil {
		return fmt.Errorf("record created mount point: %w", err)
	}
	return nil
}
