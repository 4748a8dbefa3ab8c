package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p1 of 100", hundred, 1, time.Millisecond},
		{"p99.9 of 1000", thousand, 99.9, 999 * time.Microsecond},
		{"p99 of 5 is the max", ms(1, 2, 3, 4, 5), 99, 5 * time.Millisecond},
		{"tiny p is the min", ms(1, 2, 3), 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: Percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestScheduleCountAndDue(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		rate  float64
		d     time.Duration
		count int
		due   map[int]time.Duration // i -> offset from start
	}{
		{1000, time.Second, 1000, map[int]time.Duration{0: 0, 1: time.Millisecond, 999: 999 * time.Millisecond}},
		{3, time.Second, 3, map[int]time.Duration{1: 333333333, 2: 666666666}},
		{1000, 1500 * time.Microsecond, 2, map[int]time.Duration{1: time.Millisecond}},
		{0.5, 10 * time.Second, 5, map[int]time.Duration{4: 8 * time.Second}},
		{250, 2 * time.Second, 500, map[int]time.Duration{499: 1996 * time.Millisecond}},
	}
	for _, tt := range tests {
		s := Schedule{Start: start, Rate: tt.rate, Duration: tt.d}
		if got := s.Count(); got != tt.count {
			t.Errorf("rate %v for %v: Count = %d, want %d", tt.rate, tt.d, got, tt.count)
		}
		for i, off := range tt.due {
			if got := s.Due(i).Sub(start); got != off {
				t.Errorf("rate %v: Due(%d) = start+%v, want start+%v", tt.rate, i, got, off)
			}
		}
	}
}

func TestScheduleDueBy(t *testing.T) {
	start := time.Unix(1000, 0)
	s := Schedule{Start: start, Rate: 1000, Duration: 10 * time.Millisecond}
	tests := []struct {
		at   time.Duration
		want int
	}{
		{-time.Millisecond, 0},
		{0, 1}, // request 0 is due at the start
		{999 * time.Microsecond, 1},
		{time.Millisecond, 2},
		{5500 * time.Microsecond, 6}, // a late wake-up releases every overdue request
		{time.Hour, 10},              // capped at Count
	}
	for _, tt := range tests {
		if got := s.DueBy(start.Add(tt.at)); got != tt.want {
			t.Errorf("DueBy(start%+v) = %d, want %d", tt.at, got, tt.want)
		}
	}
	// Every request is released exactly when due: DueBy(Due(i)) includes i,
	// and just before it does not.
	for i := range s.Count() {
		if n := s.DueBy(s.Due(i)); n != i+1 {
			t.Errorf("DueBy(Due(%d)) = %d, want %d", i, n, i+1)
		}
	}
}

func TestResultLine(t *testing.T) {
	r := Result{Requests: 4, Errors: 1, Elapsed: 2 * time.Second, Latencies: ms(4, 1, 3, 2)}
	want := "rps=2.0 requests=4 errors=1 p50_us=2000 p90_us=4000 p99_us=4000 p999_us=4000 max_us=4000"
	if got := r.Line(); got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	ok := options{url: "http://x/", conns: 4, rate: 1000, duration: time.Second}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mut := range map[string]func(*options){
		"no url":    func(o *options) { o.url = "" },
		"no conns":  func(o *options) { o.conns = 0 },
		"no rate":   func(o *options) { o.rate = 0 },
		"no length": func(o *options) { o.duration = 0 },
	} {
		o := ok
		mut(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: validate passed", name)
		}
	}
	maxMode := ok
	maxMode.rate, maxMode.max = 0, true
	if err := maxMode.validate(); err != nil {
		t.Errorf("-max without -rate: %v", err)
	}
}

// TestRunCountsErrorsAndConns runs both modes against a loopback server
// that answers every third request with a short body, and checks that all
// requests are accounted for over exactly -conns connections.
func TestRunCountsErrorsAndConns(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		short := n%3 == 0
		mu.Unlock()
		if short {
			fmt.Fprint(w, "x")
			return
		}
		fmt.Fprint(w, strings.Repeat("y", 16))
	}))
	conns := 0
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	for _, maxMode := range []bool{false, true} {
		mu.Lock()
		n, conns = 0, 0
		mu.Unlock()
		r, err := run(t.Context(), options{url: srv.URL, conns: 3, rate: 300, duration: 100 * time.Millisecond, size: 16, max: maxMode, timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		served, opened := n, conns
		mu.Unlock()
		if r.Requests+r.Errors != served {
			t.Errorf("max=%v: %d ok + %d errors, server saw %d", maxMode, r.Requests, r.Errors, served)
		}
		if want := served / 3; r.Errors != want {
			t.Errorf("max=%v: errors = %d, want %d (every third body is short)", maxMode, r.Errors, want)
		}
		if !maxMode && served != 30 {
			t.Errorf("open loop: served %d requests, want 30 (300/s for 100ms)", served)
		}
		if opened != 3 {
			t.Errorf("max=%v: %d connections, want 3", maxMode, opened)
		}
		if len(r.Latencies) != r.Requests {
			t.Errorf("max=%v: %d latencies for %d requests", maxMode, len(r.Latencies), r.Requests)
		}
	}
}
