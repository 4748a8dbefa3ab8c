package nodelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// startProbes runs c's probes for its current instance: the startup probe
// first, then readiness and liveness. Results come back as events.
func (w *worker) startProbes(c *ctr) {
	sp, rp, lp := c.spec.StartupProbe, c.spec.ReadinessProbe, c.spec.LivenessProbe
	if sp == nil && rp == nil && lp == nil {
		return
	}
	ctx, cancel := context.WithCancel(w.podCtx)
	c.probeCancel = cancel
	inst := c.instance
	spec := c.spec
	specPath := w.specPath(c)
	podIP := ""
	if w.net.IP.IsValid() {
		podIP = w.net.IP.String()
	}
	send := func(kind eventKind, msg string) bool {
		select {
		case w.events <- event{c: c, instance: inst, kind: kind, msg: msg}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	probe := func(p *corev1.Probe) error { return w.probeOnce(ctx, p, &spec, specPath, podIP) }
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		if sp != nil {
			var failed string
			probeLoop(ctx, sp, false, probe, func(s ProbeState, err error) bool {
				if s.Result {
					return true
				}
				if s.Failures >= max(sp.FailureThreshold, 1) {
					failed = fmt.Sprintf("startup probe failed: %v", err)
					return true
				}
				return false
			})
			if ctx.Err() != nil {
				return
			}
			if failed != "" {
				send(evUnhealthy, failed)
				return
			}
			if !send(evStarted, "") {
				return
			}
		}
		if rp != nil {
			w.bg.Add(1)
			go func() {
				defer w.bg.Done()
				last := false
				probeLoop(ctx, rp, false, probe, func(s ProbeState, _ error) bool {
					if s.Result != last {
						last = s.Result
						kind := evNotReady
						if s.Result {
							kind = evReady
						}
						return !send(kind, "")
					}
					return false
				})
			}()
		}
		if lp != nil {
			probeLoop(ctx, lp, true, probe, func(s ProbeState, err error) bool {
				if !s.Result {
					send(evUnhealthy, fmt.Sprintf("liveness probe failed: %v", err))
					return true
				}
				return false
			})
		}
	}()
}

// probeLoop runs p every periodSeconds after initialDelaySeconds, feeding
// each outcome into a ProbeState starting at initial; it stops when ctx
// ends or observe returns true.
func probeLoop(ctx context.Context, p *corev1.Probe, initial bool, probe func(*corev1.Probe) error, observe func(ProbeState, error) bool) {
	s := ProbeState{Result: initial}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	delay := time.Duration(p.InitialDelaySeconds) * time.Second
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := probe(p)
		if ctx.Err() != nil {
			return
		}
		s = s.Observe(err == nil, p.SuccessThreshold, p.FailureThreshold)
		if observe(s, err) {
			return
		}
		t.Reset(period)
	}
}

// probeOnce runs one probe; nil means success.
func (w *worker) probeOnce(ctx context.Context, p *corev1.Probe, c *corev1.Container, specPath, podIP string) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, c)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = podIP
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
		if u.Path == "" {
			u.Path = "/"
		}
		return httpProbe(ctx, w.cfg.Node.NetnsPath, u.String(), g.HTTPHeaders)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		conn, err := DialInNetns(ctx, w.cfg.Node.NetnsPath, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.GRPC != nil:
		// No gRPC health client here: a TCP connect is the closest check.
		conn, err := DialInNetns(ctx, w.cfg.Node.NetnsPath, "tcp", net.JoinHostPort(podIP, strconv.Itoa(int(p.GRPC.Port))))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		return execProbe(ctx, w.cfg.ShimPath, specPath, p.Exec.Command, MarkerEnv+"="+w.cfg.Marker)
	}
	return errors.New("probe has no handler")
}

func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("probe port %q is not a named port of container %q", p.StrVal, c.Name)
}

func httpProbe(ctx context.Context, netnsPath, u string, headers []corev1.HTTPHeader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	for _, h := range headers {
		if h.Name == "Host" {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialInNetns(ctx, netnsPath, network, addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe %s returned status %d", u, resp.StatusCode)
	}
	return nil
}

func execProbe(ctx context.Context, shimPath, specPath string, argv []string, marker string) error {
	if len(argv) == 0 {
		return errors.New("exec probe has an empty command")
	}
	cmd := exec.CommandContext(ctx, shimPath, append([]string{"exec-container", specPath, "--"}, argv...)...)
	cmd.Env = []string{marker}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("exec probe %v timed out", argv)
		}
		return fmt.Errorf("exec probe %v: %w: %s", argv, err, truncate(out, 256))
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// DialInNetns dials from inside the network namespace at netnsPath ("" =
// the current one): the socket is created on an OS thread that joined the
// namespace, and keeps that namespace once created.
func DialInNetns(ctx context.Context, netnsPath, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if netnsPath == "" {
		return d.DialContext(ctx, network, addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open current netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open node netns %s: %w", netnsPath, err)}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("join node netns %s: %w", netnsPath, err)}
			return
		}
		c, err := d.DialContext(ctx, network, addr)
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr == nil {
			runtime.UnlockOSThread()
		} // else: keep the thread locked; it exits with this goroutine.
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
