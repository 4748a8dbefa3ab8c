//go:build linux

package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Attach attaches the program to the TCX ingress of interface ifindex (in the
// calling thread's network namespace, which must be the node's) and pins the
// link so that it survives the agent. The program goes first in the TCX chain
// so that a CNI program cannot redirect enrolled traffic past it. Attaching an
// interface that is already attached replaces the program in place. The first
// Attach also attaches the sk_lookup program to the node netns (see
// bpf/capture.c: SYNs that reuse the addresses of a TIME_WAIT socket).
func (o *Objects) Attach(ifindex int) error {
	if ifindex <= 0 {
		return fmt.Errorf("attach tcx ingress: invalid ifindex %d", ifindex)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.ensureLookupLink(); err != nil {
		return err
	}
	pin := linkPinPath(o.pinDir, ifindex)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		live := linkIfindex(l) == ifindex
		if live {
			err = l.Update(o.objs.CaptureIngress)
		}
		l.Close()
		if live && err == nil {
			return nil
		}
		// Defunct (the interface went away and the index was reused) or not
		// updatable: replace it.
		if err := os.Remove(pin); err != nil {
			return fmt.Errorf("attach tcx ingress on ifindex %d: remove stale pin: %w", ifindex, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("attach tcx ingress on ifindex %d: load pinned link: %w", ifindex, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   o.objs.CaptureIngress,
		Attach:    ebpf.AttachTCXIngress,
		Anchor:    link.Head(),
	})
	if err != nil {
		return fmt.Errorf("attach tcx ingress on ifindex %d: %w", ifindex, featureErr(err))
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("attach tcx ingress on ifindex %d: pin link: %w", ifindex, err)
	}
	return nil
}

// ensureLookupLink attaches the sk_lookup program to the calling thread's
// network namespace unless a link is pinned already.
func (o *Objects) ensureLookupLink() error {
	pin := filepath.Join(o.pinDir, linksDir, lookupPin)
	if _, err := os.Stat(pin); err == nil {
		return nil
	}
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("attach sk_lookup: %w", err)
	}
	defer ns.Close()
	l, err := link.AttachNetNs(int(ns.Fd()), o.objs.CaptureLookup)
	if err != nil {
		return fmt.Errorf("attach sk_lookup to the node netns: %w", featureErr(err))
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("attach sk_lookup: pin link: %w", err)
	}
	return nil
}

// Detach detaches the program from interface ifindex and removes the link's
// pin. Detaching an interface that is not attached is a no-op.
func (o *Objects) Detach(ifindex int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return detachPinned(linkPinPath(o.pinDir, ifindex))
}

// Attached returns the interfaces that have a pinned link.
func (o *Objects) Attached() ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(o.pinDir, linksDir))
	if err != nil {
		return nil, fmt.Errorf("list attached interfaces: %w", err)
	}
	var out []int
	for _, e := range entries {
		if ifindex, ok := parseLinkPin(e.Name()); ok {
			out = append(out, ifindex)
		}
	}
	return out, nil
}

// adoptLinks switches links pinned by an earlier run to the loaded programs and
// removes the pins of links whose interface or netns is gone.
func (o *Objects) adoptLinks() error {
	pin := filepath.Join(o.pinDir, linksDir, lookupPin)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		err = l.Update(o.objs.CaptureLookup)
		l.Close()
		if err != nil {
			// Its netns is gone: the next Attach attaches anew.
			if err := os.Remove(pin); err != nil {
				return fmt.Errorf("remove stale link pin %s: %w", pin, err)
			}
			o.log.Info("removed stale link pin", zap.String("pin", pin), zap.Error(err))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("adopt pinned link %s: %w", pin, err)
	}
	ifindexes, err := o.Attached()
	if err != nil {
		return err
	}
	for _, ifindex := range ifindexes {
		pin := linkPinPath(o.pinDir, ifindex)
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return fmt.Errorf("adopt pinned link %s: %w", pin, err)
		}
		if linkIfindex(l) == ifindex {
			err = l.Update(o.objs.CaptureIngress)
			l.Close()
			if err != nil {
				return fmt.Errorf("adopt pinned link %s: update program: %w", pin, err)
			}
			o.log.Info("replaced program on pinned link", zap.Int("ifindex", ifindex))
			continue
		}
		l.Close()
		if err := os.Remove(pin); err != nil {
			return fmt.Errorf("remove stale link pin %s: %w", pin, err)
		}
		o.log.Info("removed stale link pin", zap.Int("ifindex", ifindex))
	}
	return nil
}

// linkIfindex is the interface a TCX link is attached to, 0 when the link is
// defunct (its interface was deleted) or not a TCX link.
func linkIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	tcx := info.TCX()
	if tcx == nil {
		return 0
	}
	return int(tcx.Ifindex)
}

// detachPinned detaches the link pinned at pin and removes the pin.
func detachPinned(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", pin, err)
	}
	defer l.Close()
	// Explicit detach: another process may still hold the link open.
	if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("detach %s: %w", pin, err)
	}
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("detach %s: unpin: %w", pin, err)
	}
	return nil
}

// Uninstall detaches every link pinned under pinDir and removes all pins (the
// maps go when their last user closes them). Node routing is left to
// [NodeRouting.Remove].
func Uninstall(pinDir string) error {
	entries, err := os.ReadDir(filepath.Join(pinDir, linksDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("uninstall capture: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := detachPinned(filepath.Join(pinDir, linksDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uninstall capture: %w", err)
	}
	if err := os.RemoveAll(pinDir); err != nil {
		return fmt.Errorf("uninstall capture: %w", err)
	}
	return nil
}
