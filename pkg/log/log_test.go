package log

import "testing"

func TestNewLevels(t *testing.T) {
	for _, lvl := range []string{"", "debug", "info", "warn", "error"} {
		l, err := New(Options{Level: lvl, Component: "test"})
		if err != nil {
			t.Fatalf("New(%q): %v", lvl, err)
		}
		if lvl == "debug" && !l.Core().Enabled(-1) {
			t.Errorf("debug level not enabled")
		}
	}
	if _, err := New(Options{Level: "loud"}); err == nil {
		t.Fatal("New(loud) succeeded, want error")
	}
}
