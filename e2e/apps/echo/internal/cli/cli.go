package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/client"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/server"
	"github.com/ambient-mesh/ambient/pkg/log"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // a client request got no response, or the server failed
	ExitUsage  = 2 // bad flags
)

// Env is how the commands read the environment (os.LookupEnv in main).
type Env func(string) (string, bool)

// Main runs the command line args (without the program name) until ctx
// ends (the server) or the work is done (the client), and returns the
// exit code.
func Main(ctx context.Context, args []string, env Env, stdout, stderr io.Writer) int {
	code := ExitOK
	root := newRoot(env, stdout, &code)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "echo:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return ExitUsage
		}
		return ExitFailed
	}
	return code
}

// usageError marks errors caused by flags.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func newRoot(env Env, stdout io.Writer, code *int) *cobra.Command {
	var so serverOptions
	root := &cobra.Command{
		Use:           "echo",
		Short:         "Test workload of the ambient mesh: echo server (default) and load client",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), so, env)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	so.bind(root, env)

	var so2 serverOptions
	srv := &cobra.Command{
		Use:   "server",
		Short: "Serve TCP echo, HTTP/1.1 + h2c, gRPC and optionally HTTPS, answering with the pod's identity",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), so2, env)
		},
	}
	so2.bind(srv, env)

	var co clientOptions
	cl := &cobra.Command{
		Use:   "client",
		Short: "Send requests to one target and print one JSON summary",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := runClient(cmd.Context(), co, stdout)
			*code = c
			return err
		},
	}
	co.bind(cl)
	root.AddCommand(srv, cl)
	return root
}

type serverOptions struct {
	tcp, http, grpc, tls string
	address              string
	versionLabel         string
	tlsCert, tlsKey      string
	drain                time.Duration
	logLevel             string
	logJSON              bool
}

func (o *serverOptions) bind(cmd *cobra.Command, env Env) {
	f := cmd.Flags()
	f.StringVar(&o.tcp, "tcp-port", envOr(env, EnvTCPPorts, "9000"), "raw TCP echo ports, comma-separated; 0 = off (env "+EnvTCPPorts+")")
	f.StringVar(&o.http, "http-port", envOr(env, EnvHTTPPorts, "8080"), "HTTP/1.1 + h2c ports, comma-separated; 0 = off (env "+EnvHTTPPorts+")")
	f.StringVar(&o.grpc, "grpc-port", envOr(env, EnvGRPCPorts, "7070"), "gRPC ports, comma-separated; 0 = off (env "+EnvGRPCPorts+")")
	f.StringVar(&o.tls, "tls-port", envOr(env, EnvTLSPorts, "0"), "HTTPS ports, comma-separated; 0 = off (env "+EnvTLSPorts+")")
	f.StringVar(&o.address, "listen-address", "", "IP to listen on (default: all)")
	f.StringVar(&o.versionLabel, "version-label", "", "version reported in answers (default: env "+api.EnvVersion+")")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for --tls-port (default: self-signed)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key for --tls-cert")
	f.DurationVar(&o.drain, "drain-timeout", server.DefaultDrainTimeout, "how long to drain open connections on SIGTERM")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON lines")
}

func runServer(ctx context.Context, o serverOptions, env Env) error {
	ports := map[string][]int{}
	for _, p := range []struct{ flag, val, proto string }{
		{"tcp-port", o.tcp, "tcp"}, {"http-port", o.http, "http"}, {"grpc-port", o.grpc, "grpc"}, {"tls-port", o.tls, "tls"},
	} {
		ps, err := parsePorts(p.flag, p.val)
		if err != nil {
			return usageError{err}
		}
		ports[p.proto] = ps
	}
	if err := checkDistinct(ports); err != nil {
		return usageError{err}
	}
	if len(ports["tcp"])+len(ports["http"])+len(ports["grpc"])+len(ports["tls"]) == 0 {
		return usageError{errors.New("every port is off: give at least one of --tcp-port, --http-port, --grpc-port, --tls-port")}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together: give both or neither")}
	}
	logger, err := log.New(log.Options{Level: o.logLevel, JSON: o.logJSON, Component: "echo"})
	if err != nil {
		return usageError{err}
	}
	hostname, _ := os.Hostname()
	id := api.IdentityFromEnv(env, hostname)
	if o.versionLabel != "" {
		id.Version = o.versionLabel
	}
	cfg := server.Config{Identity: id, Logger: logger.Logger, DrainTimeout: o.drain}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	}
	var ls server.Listeners
	var opened []net.Listener
	open := func(proto string, dst *[]net.Listener) error {
		for _, p := range ports[proto] {
			l, err := net.Listen("tcp", net.JoinHostPort(o.address, strconv.Itoa(p)))
			if err != nil {
				for _, l := range opened {
					_ = l.Close()
				}
				return fmt.Errorf("listen %s on port %d (is another process using it?): %w", proto, p, err)
			}
			opened = append(opened, l)
			*dst = append(*dst, l)
		}
		return nil
	}
	for _, g := range []struct {
		proto string
		dst   *[]net.Listener
	}{{"tcp", &ls.TCP}, {"http", &ls.HTTP}, {"grpc", &ls.GRPC}, {"tls", &ls.TLS}} {
		if err := open(g.proto, g.dst); err != nil {
			return err
		}
	}
	logger.Info("echo server starting",
		zap.Ints("tcpPorts", ports["tcp"]), zap.Ints("httpPorts", ports["http"]),
		zap.Ints("grpcPorts", ports["grpc"]), zap.Ints("tlsPorts", ports["tls"]),
		zap.String("pod", id.Pod), zap.String("namespace", id.Namespace),
		zap.String("serviceAccount", id.ServiceAccount), zap.String("version", id.Version),
		zap.String("node", id.Node), zap.String("podIP", id.PodIP), zap.String("hostname", id.Hostname))
	err = server.Run(ctx, cfg, ls)
	_ = logger.Sync()
	return err
}

type clientOptions struct {
	target          string
	count           int
	concurrency     int
	qps             float64
	timeout         time.Duration
	headers         []string
	method          string
	bodySize        int
	keepAlive       bool
	newConn         bool
	allowErrors     bool
	startDelay      time.Duration
	tlsCert, tlsKey string
	stream          int
}

func (o *clientOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "tcp://host:port, http://host:port/path, h2c://host:port/path, https://host:port/path or grpc://host:port (required)")
	f.IntVar(&o.count, "count", 1, "number of requests")
	f.IntVar(&o.concurrency, "concurrency", 1, "requests in flight")
	f.Float64Var(&o.qps, "qps", 0, "requests per second; 0 = as fast as possible")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of each request")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "request header key:value (repeatable; Host sets the authority; gRPC metadata for grpc://)")
	f.StringVar(&o.method, "method", "GET", "HTTP method")
	f.IntVar(&o.bodySize, "body-size", 0, "request body / payload size in bytes")
	f.BoolVar(&o.keepAlive, "keepalive", true, "reuse connections between requests (http, h2c, https, grpc)")
	f.BoolVar(&o.newConn, "new-conn", false, "open a new connection per request")
	f.BoolVar(&o.allowErrors, "allow-errors", false, "exit 0 even when requests got no response")
	f.DurationVar(&o.startDelay, "start-delay", 0, "wait this long before the first request (e.g. until a new pod's traffic is captured)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM client certificate for https:// targets")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key for --tls-cert")
	f.IntVar(&o.stream, "grpc-stream", 0, "grpc:// only: each request is one EchoStream call exchanging this many messages one at a time; 0 = unary Echo")
}

func runClient(ctx context.Context, o clientOptions, stdout io.Writer) (int, error) {
	if o.startDelay > 0 {
		select {
		case <-ctx.Done():
			return ExitFailed, ctx.Err()
		case <-time.After(o.startDelay):
		}
	}
	if o.target == "" {
		return ExitUsage, usageError{errors.New("--target is required, e.g. --target http://echo.demo:8080/")}
	}
	hs, err := client.ParseHeaders(o.headers)
	if err != nil {
		return ExitUsage, usageError{err}
	}
	opts := client.Options{
		Target: o.target, Count: o.count, Concurrency: o.concurrency, QPS: o.qps, Timeout: o.timeout,
		Headers: hs, Method: o.method, BodySize: o.bodySize, KeepAlive: o.keepAlive, NewConn: o.newConn,
		Stream: o.stream,
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return ExitUsage, usageError{errors.New("--tls-cert and --tls-key go together: give both or neither")}
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return ExitUsage, usageError{fmt.Errorf("load --tls-cert/--tls-key: %w", err)}
		}
		opts.ClientCert = &cert
	}
	r, err := client.Run(ctx, opts)
	if err != nil {
		return ExitUsage, usageError{err}
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(r); err != nil {
		return ExitFailed, fmt.Errorf("write result: %w", err)
	}
	return r.ExitCode(o.allowErrors), nil
}
