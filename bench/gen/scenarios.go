package main

// The chat scenarios of issue 4 with the generator's hot loops in Go. Each returns
// the same figures, under the same names, as the Python generator in bench/scenarios.py
// did, plus the generator's and the server's CPU over the measured interval. Every loop
// is bounded in count and time.

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"
)

type sizes struct {
	receivers  int
	senders    int
	lines      int
	msgs       int
	rate       float64
	seconds    float64
	lineText   int
	conns      int
	broadcasts int
	timeout    time.Duration
	inflight   int
	massTarget string
}

type figures map[string]float64

// stamp is a chat line's text: "@@<swarm ns> " and extra, padded with x to lineText bytes.
func (s *swarm) stamp(dst []byte, n int, extra string) []byte {
	start := len(dst)
	dst = append(dst, '@', '@')
	dst = strconv.AppendInt(dst, s.now(), 10)
	dst = append(dst, ' ')
	dst = append(dst, extra...)
	for len(dst)-start < n {
		dst = append(dst, 'x')
	}
	return dst
}

func pct(values []float64, q float64) (float64, bool) {
	if len(values) == 0 {
		return 0, false
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	i := int(q/100*float64(len(s)-1) + 0.5)
	if i > len(s)-1 {
		i = len(s) - 1
	}
	return s[i], true
}

func putPct(out figures, key string, values []float64, q float64) {
	if v, ok := pct(values, q); ok {
		out[key] = v
	}
}

// room registers receivers and senders and reads past every welcome and join line.
func room(s *swarm, sz sizes) (recv, send []*conn, err error) {
	recv, err = s.open(sz.receivers, "r", 60*time.Second, sz.inflight)
	if err != nil {
		return nil, nil, err
	}
	send, err = s.open(sz.senders, "s", 60*time.Second, sz.inflight)
	if err != nil {
		return nil, nil, err
	}
	if len(recv) < sz.receivers || len(send) < sz.senders {
		return nil, nil, timeoutf("only %d receivers and %d senders registered", len(recv), len(send))
	}
	for _, c := range recv {
		c.recv = true
	}
	s.say(send[0], []byte("SYNC-ROOM"))
	others := append(append([]*conn(nil), recv...), send[1:]...)
	if _, err = s.expectMarker(others, []byte("SYNC-ROOM"), 60*time.Second); err != nil {
		return nil, nil, err
	}
	s.drain(50 * time.Millisecond)
	return recv, send, nil
}

// ------------------------------------------------------------------ 1. burst fan-out

func burst(s *swarm, sz sizes, m *meter) (figures, error) {
	recv, send, err := room(s, sz)
	if err != nil {
		return nil, err
	}
	expected := int64(sz.senders * sz.lines)
	for _, c := range recv {
		c.lines, c.markNs = 0, 0
	}
	var block []byte
	for i := 0; i < sz.lines; i++ {
		block = s.line(block, s.stamp(nil, sz.lineText, ""))
	}
	done := 0
	s.handle = func(c *conn, data []byte, now int64) {
		before := c.lines
		count(c, data, now)
		if c.recv && before < expected && c.lines >= expected {
			done++
		}
	}
	m.begin()
	reads0 := s.reads
	t0 := s.now()
	for _, c := range send {
		s.send(c, block)
	}
	// A timeout here is a result (lost lines), not a failure.
	deadline := time.Now().Add(120 * time.Second)
	for done < len(recv) && time.Now().Before(deadline) {
		reads, got := s.reads, s.bytes
		s.poll(20)
		// Small reads cost the generator a system call and, on loopback, the ACK's whole
		// TCP path each: when a round's reads were small, let lines gather a little.
		if n := s.reads - reads; n > 0 && (s.bytes-got)/n < coalesceBelow {
			pause(coalesceFor)
		}
	}
	s.handle = discard
	var got, last int64
	for _, c := range recv {
		if c.lines < expected {
			got += c.lines
		} else {
			got += expected
		}
		if c.markNs > last {
			last = c.markNs
		}
	}
	wall := float64(max64(last-t0, 1)) / 1e9
	out := m.end(figures{
		"deliveries_per_s": float64(got) / wall,
		"lost":             float64(expected*int64(len(recv)) - got),
		"seconds":          wall,
	})
	perCPU(out, float64(got))
	if reads := s.reads - reads0; reads > 0 {
		out["lines_per_read"] = float64(got) / float64(reads)
	}
	return out, nil
}

// perCPU adds deliveries per CPU second of the generator and of the server: on a
// shared machine a side that got less of its core shows it here, not in the rate.
func perCPU(out figures, deliveries float64) {
	if cpu := out["gen_cpu_s"]; cpu > 0 {
		out["deliveries_per_gen_cpu_s"] = deliveries / cpu
	}
	if cpu := out["server_cpu_s"]; cpu > 0 {
		out["deliveries_per_server_cpu_s"] = deliveries / cpu
	}
}

// The burst's read coalescing: a round whose reads averaged under coalesceBelow bytes
// is followed by a coalesceFor pause. It delays the last arrival seen by at most that
// much (plus the scheduler's wake-up) in bursts of 0.1-10 s; the server's work is the
// same, since what it writes waits in the receivers' socket buffers either way.
const (
	coalesceBelow = 64 << 10
	coalesceFor   = 200 * time.Microsecond
)

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// ------------------------------------------------------------------ 2. closed loop

func closedLoop(s *swarm, sz sizes, m *meter) (figures, error) {
	recv, send, err := room(s, sz)
	if err != nil {
		return nil, err
	}
	sender := send[0]
	for _, c := range recv {
		c.lines = 0
	}
	var target, last int64
	left := 0
	s.handle = func(c *conn, data []byte, now int64) {
		if !c.recv {
			return
		}
		before := c.lines
		count(c, data, now)
		if before < target && target <= c.lines {
			left--
			last = now
		}
	}
	times := make([]float64, 0, sz.msgs)
	m.begin()
	tStart := time.Now()
	deadline := tStart.Add(120 * time.Second)
	text := make([]byte, 0, sz.lineText+16)
	for i := 1; i <= sz.msgs; i++ {
		target, left = int64(i), len(recv)
		t0 := s.now()
		s.say(sender, s.stamp(text[:0], sz.lineText, ""))
		for left > 0 {
			if time.Now().After(deadline) {
				return nil, timeoutf("closed loop: message %d not delivered to all", i)
			}
			s.poll(10)
		}
		times = append(times, float64(last-t0)/1e6)
	}
	wall := time.Since(tStart).Seconds()
	out := figures{"msgs_per_s": float64(len(times)) / wall}
	putPct(out, "last_p50_ms", times, 50)
	putPct(out, "last_p99_ms", times, 99)
	return m.end(out), nil
}

// ------------------------------------------------------------------ 3. paced

func paced(s *swarm, sz sizes, m *meter) (figures, error) {
	recv, send, err := room(s, sz)
	if err != nil {
		return nil, err
	}
	var lat []int64
	for _, c := range s.all {
		c.lines = 0
		c.buf = c.buf[:0]
	}
	s.handle = latency(&lat)
	perSender := int(sz.rate * sz.seconds)
	interval := time.Duration(float64(time.Second) / sz.rate)
	m.begin()
	start := time.Now()
	text := make([]byte, 0, sz.lineText+16)
	for n := 0; n < perSender; n++ {
		for k, c := range send {
			// Senders are staggered evenly inside each interval.
			due := start.Add(time.Duration(n)*interval + interval*time.Duration(k)/time.Duration(len(send)))
			for {
				wait := time.Until(due)
				if wait <= 0 {
					break
				}
				if wait > 5*time.Millisecond {
					wait = 5 * time.Millisecond
				}
				// Round up: sleeping past due only delays a send, and each line's
				// latency is measured from its own stamp.
				s.poll(int((wait + time.Millisecond - 1) / time.Millisecond))
			}
			s.say(c, s.stamp(text[:0], sz.lineText, ""))
		}
	}
	expected := perSender*len(send)*len(recv) + perSender*len(send)*(len(send)-1)
	end := time.Now().Add(10 * time.Second)
	for len(lat) < expected && time.Now().Before(end) {
		s.poll(10)
	}
	ms := make([]float64, len(lat))
	for i, x := range lat {
		ms[i] = float64(x) / 1e6
	}
	out := figures{"lost": float64(expected - len(lat))}
	putPct(out, "p50_ms", ms, 50)
	putPct(out, "p99_ms", ms, 99)
	return m.end(out), nil
}

// ------------------------------------------------------------------ 4. scale

// scale fills the server with idle clients, then times broadcasts to all of them.
// On IRC servers the clients register without joining and the broadcast is an
// operator's mass message (sz.massTarget); see docs/benchmarks.md.
func scale(s *swarm, sz sizes, m *meter) (figures, error) {
	rss0 := rssKiB(m.pid)
	t0 := time.Now()
	idle, err := s.open(sz.conns, "i", sz.timeout, sz.inflight)
	if err != nil {
		if _, ok := err.(errTimeout); !ok {
			return nil, err
		}
	}
	connectS := time.Since(t0).Seconds()
	// The sender always joins (it is the one who speaks in the room).
	join := s.join
	s.join = true
	ops, err := s.open(1, "op", 30*time.Second, 1)
	s.join = join
	if err != nil || len(ops) != 1 {
		return nil, timeoutf("scale: the broadcasting client could not register (%v)", err)
	}
	sender := ops[0]
	if sz.massTarget != "" {
		s.send(sender, []byte("OPER bench bench\r\n"))
	}
	s.drain(time.Second)
	rss := rssKiB(m.pid)
	var lat, reached []float64
	m.begin()
	// Broadcast 0 settles: everyone has seen a first marker (join notices are behind us),
	// and memory is read after it, with every connection's buffers touched.
	for k := 0; k <= sz.broadcasts; k++ {
		marker := []byte(fmt.Sprintf("BCAST%d-", k))
		alive := live(idle)
		tSend := s.now()
		text := s.stamp(nil, 0, string(marker))
		if sz.massTarget != "" {
			msg := append([]byte("PRIVMSG "+sz.massTarget+" :"), text...)
			s.send(sender, append(msg, '\r', '\n'))
		} else {
			s.say(sender, text)
		}
		last, err := s.expectMarker(alive, marker, 60*time.Second)
		seen := 0
		for _, c := range alive {
			if !c.want {
				seen++
			}
		}
		// Four broadcasts a second, as the 4 lines/s.
		pause := time.Duration(tSend+int64(250*time.Millisecond)-s.now()) * time.Nanosecond
		if k == 0 {
			rss = rssKiB(m.pid)
			s.drain(pause)
			continue
		}
		if err == nil {
			lat = append(lat, float64(last-tSend)/1e6)
		}
		reached = append(reached, float64(seen))
		s.drain(pause)
	}
	out := figures{
		"wanted":           float64(sz.conns),
		"connect_s":        connectS,
		"rss_kib_per_conn": float64(rss-rss0) / float64(maxInt(len(idle), 1)),
		"rss_mib":          float64(rss) / 1024,
	}
	if len(reached) > 0 {
		sort.Float64s(reached)
		out["connections"] = reached[0]
	} else {
		out["connections"] = 0
	}
	if len(lat) > 0 {
		sort.Float64s(lat)
		out["bcast_ms"] = (lat[(len(lat)-1)/2] + lat[len(lat)/2]) / 2 // the median
	}
	putPct(out, "bcast_p99_ms", lat, 99)
	return m.end(out), nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// ------------------------------------------------------------------ idle clients held

// hold opens sz.conns idle clients (in the room on chat servers), prints one JSON line
// with how many registered, then keeps them, reading and discarding, until its standard
// input closes or the -limit ends: bench/memory.py measures the server meanwhile.
func hold(s *swarm, sz sizes, _ *meter) (figures, error) {
	t0 := time.Now()
	idle, err := s.open(sz.conns, "h", sz.timeout, sz.inflight)
	if err != nil {
		if _, ok := err.(errTimeout); !ok {
			return nil, err
		}
	}
	s.drain(500 * time.Millisecond)
	ready := figures{"connections": float64(len(live(idle))), "connect_s": time.Since(t0).Seconds()}
	if err := json.NewEncoder(os.Stdout).Encode(ready); err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(0, true); err != nil {
		return nil, err
	}
	one := make([]byte, 512)
	for {
		s.poll(50)
		n, err := read(0, one)
		if n == 0 || (err != nil && err != syscall.EAGAIN) {
			return figures{"connections": float64(len(live(idle)))}, nil
		}
	}
}
