// Package log builds the zap loggers of the mesh binaries: JSON or console
// output, a level that can be changed at run time (ztunnel's /logging
// endpoint), and a component field on every line. Libraries take a
// *zap.Logger from their caller and never set a global one.
package log

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options configures New.
type Options struct {
	// Level is debug, info, warn or error.
	Level string
	// JSON selects JSON output; otherwise a human-readable console format.
	JSON bool
	// Component tags every line with component=<Component>.
	Component string
}

// Logger is a zap logger with its dynamic level.
type Logger struct {
	*zap.Logger
	Level zap.AtomicLevel
}

// New builds a logger writing to stderr.
func New(o Options) (*Logger, error) {
	lvl := zap.NewAtomicLevel()
	if o.Level != "" {
		if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
			return nil, fmt.Errorf("log level %q (want debug, info, warn or error): %w", o.Level, err)
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if o.JSON {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)
	l := zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	if o.Component != "" {
		l = l.With(zap.String("component", o.Component))
	}
	return &Logger{Logger: l, Level: lvl}, nil
}

// Err is zap.Error, so a main need not import zap for one field.
func Err(err error) zap.Field { return zap.Error(err) }
