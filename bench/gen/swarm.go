package main

// The swarm: many non-blocking client sockets to one server on one epoll, driven by
// one thread. The hot path (a receiver's read while counting) is one read(2) of up to
// 256 KiB into a buffer shared by every connection and one SIMD newline count: no
// allocation, no copy, no per-line work. It speaks chatd's line protocol (a client is
// in once it has seen its first line) and plain IRC (NICK/USER, wait for 001, JOIN,
// wait for 366, answer PING). It only ever connects to 127.0.0.1.

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"time"
)

const (
	connecting = iota
	registering
	joining
	ready
	closed
)

const recvSize = 1 << 18

var channel = []byte("#bench")

// errTimeout is a bounded loop that ran out of time; the harness reports it as such.
type errTimeout struct{ msg string }

func (e errTimeout) Error() string { return e.msg }

func timeoutf(format string, args ...any) error { return errTimeout{fmt.Sprintf(format, args...)} }

type conn struct {
	fd     int
	state  int
	nick   []byte
	buf    []byte // registration text, a marker's tail, or a partial stamped line
	out    []byte // what the kernel has not taken yet
	lines  int64
	markNs int64
	want   bool // still waiting for the current marker
	recv   bool // a receiver (the closed loop counts only these)
}

// handler gets every chunk read; data is only valid during the call.
type handler func(c *conn, data []byte, now int64)

type swarm struct {
	irc     bool
	join    bool
	port    int
	ep      int
	byFd    []*conn
	all     []*conn
	events  []syscall.EpollEvent
	rbuf    []byte
	handle  handler
	failed  int
	reads   int64 // read(2) calls that returned data
	bytes   int64 // and what they returned
	start   time.Time
	clients int
}

func newSwarm(irc bool, port int, join bool) (*swarm, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	s := &swarm{irc: irc, join: join, port: port, ep: ep,
		events: make([]syscall.EpollEvent, 4096), rbuf: make([]byte, recvSize),
		start: time.Now()}
	s.handle = discard
	return s, nil
}

// now is nanoseconds on the monotonic clock since the swarm started; stamps use it too.
func (s *swarm) now() int64 { return int64(time.Since(s.start)) }

func discard(*conn, []byte, int64) {}

// ------------------------------------------------------------------ output

func (s *swarm) ctl(c *conn, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.fd)}
	_ = syscall.EpollCtl(s.ep, syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

// send writes now and queues (waiting for EPOLLOUT) only what the kernel refuses.
func (s *swarm) send(c *conn, data []byte) {
	if c.state == closed {
		return
	}
	if len(c.out) > 0 {
		c.out = append(c.out, data...)
		return
	}
	n, err := write(c.fd, data)
	if err != nil {
		if err != syscall.EAGAIN {
			s.close(c)
			return
		}
		n = 0
	}
	if n < len(data) {
		c.out = append(c.out[:0], data[n:]...)
		s.ctl(c, syscall.EPOLLIN|syscall.EPOLLOUT)
	}
}

func (s *swarm) flush(c *conn) {
	n, err := write(c.fd, c.out)
	if err != nil {
		if err != syscall.EAGAIN {
			s.close(c)
		}
		return
	}
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
		s.ctl(c, syscall.EPOLLIN)
	}
}

// line frames one chat line (a PRIVMSG to #bench on IRC).
func (s *swarm) line(dst, text []byte) []byte {
	if s.irc {
		dst = append(dst, "PRIVMSG "...)
		dst = append(dst, channel...)
		dst = append(dst, " :"...)
	}
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

func (s *swarm) say(c *conn, text []byte) { s.send(c, s.line(nil, text)) }

func (s *swarm) pendingOutput() int {
	n := 0
	for _, c := range s.all {
		n += len(c.out)
	}
	return n
}

// ------------------------------------------------------------------ connect

// open connects and registers n clients, at most inflight handshakes at once.
func (s *swarm) open(n int, prefix string, timeout time.Duration, inflight int) ([]*conn, error) {
	deadline := time.Now().Add(timeout)
	made := make([]*conn, 0, n)
	waiting := 0
	started := 0
	s.handle = s.register
	defer func() { s.handle = discard }()
	for started < n || waiting > 0 {
		for started < n && waiting < inflight {
			c, err := s.connect([]byte(fmt.Sprintf("%s%d", prefix, started)))
			started++
			if err != nil {
				s.failed++
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					return live(made), timeoutf("out of descriptors after %d clients: %v", len(made), err)
				}
				continue
			}
			made = append(made, c)
			waiting++
		}
		if time.Now().After(deadline) {
			return live(made), timeoutf("%d of %d clients registered in %.0fs",
				len(made)-waiting, n, timeout.Seconds())
		}
		s.poll(50)
		waiting = 0
		for _, c := range made {
			if c.state != ready && c.state != closed {
				waiting++
			}
		}
	}
	return live(made), nil
}

func live(cs []*conn) []*conn {
	out := cs[:0:0]
	for _, c := range cs {
		if c.state == ready {
			out = append(out, c)
		}
	}
	return out
}

func (s *swarm) connect(nick []byte) (*conn, error) {
	fd, err := syscall.Socket(syscall.AF_INET,
		syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	err = syscall.Connect(fd, &syscall.SockaddrInet4{Port: s.port, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return nil, err
	}
	c := &conn{fd: fd, nick: nick}
	for len(s.byFd) <= fd {
		s.byFd = append(s.byFd, nil)
	}
	s.byFd[fd] = c
	s.all = append(s.all, c)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT, Fd: int32(fd)}
	if err := syscall.EpollCtl(s.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		s.close(c)
		return nil, err
	}
	return c, nil
}

func (s *swarm) connected(c *conn) {
	soerr, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil || soerr != 0 {
		s.failed++
		s.close(c)
		return
	}
	c.state = registering
	s.ctl(c, syscall.EPOLLIN)
	if s.irc {
		msg := append([]byte("NICK "), c.nick...)
		msg = append(msg, "\r\nUSER "...)
		msg = append(msg, c.nick...)
		msg = append(msg, " 0 * :bench\r\n"...)
		s.send(c, msg)
	}
}

func (s *swarm) register(c *conn, data []byte, _ int64) {
	c.buf = append(c.buf, data...)
	if !s.irc {
		if bytes.IndexByte(c.buf, '\n') >= 0 {
			c.state = ready
			c.buf = nil
		}
		return
	}
	if c.state == registering {
		if i := bytes.Index(c.buf, []byte(" 001 ")); i >= 0 {
			c.buf = c.buf[i:]
			if s.join {
				c.state = joining
				s.send(c, append(append([]byte("JOIN "), channel...), '\r', '\n'))
			} else {
				c.state = ready
			}
		}
	}
	if c.state == joining && bytes.Contains(c.buf, []byte(" 366 ")) {
		c.state = ready
	}
	if c.state == ready {
		c.buf = nil
	} else if len(c.buf) > 65536 {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-512:]...)
	}
}

// ------------------------------------------------------------------ input loop

// poll runs one epoll round (waiting at most ms milliseconds) and hands every chunk
// read to the current handler; it returns the number of events.
func (s *swarm) poll(ms int) int {
	n := epollWait(s.ep, s.events, ms)
	if n <= 0 {
		return 0
	}
	now := s.now()
	for i := 0; i < n; i++ {
		ev := s.events[i]
		fd := int(ev.Fd)
		if fd >= len(s.byFd) || s.byFd[fd] == nil {
			continue
		}
		c := s.byFd[fd]
		if ev.Events&syscall.EPOLLOUT != 0 {
			if c.state == connecting {
				s.connected(c)
				continue
			}
			if len(c.out) > 0 {
				s.flush(c)
			}
		}
		if ev.Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 && c.state != closed {
			r, err := read(fd, s.rbuf)
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || r <= 0 {
				if c.state == connecting {
					s.failed++
				}
				s.close(c)
				continue
			}
			s.reads++
			s.bytes += int64(r)
			data := s.rbuf[:r]
			if s.irc && bytes.Contains(data, []byte("PING")) {
				data = s.pong(c, data)
			}
			s.handle(c, data, now)
		}
	}
	return n
}

// pong answers PINGs and drops those lines (chunks are line-aligned often enough).
func (s *swarm) pong(c *conn, data []byte) []byte {
	keep := make([]byte, 0, len(data))
	for i, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("PING")) {
			reply := append([]byte("PONG"), bytes.TrimRight(line[4:], "\r")...)
			s.send(c, append(reply, '\r', '\n'))
			continue
		}
		if i > 0 {
			keep = append(keep, '\n')
		}
		keep = append(keep, line...)
	}
	return keep
}

func (s *swarm) close(c *conn) {
	if c.state == closed {
		return
	}
	c.state = closed
	_ = syscall.EpollCtl(s.ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	s.byFd[c.fd] = nil
}

func (s *swarm) closeAll() {
	for _, c := range s.all {
		s.close(c)
	}
	s.all = nil
	syscall.Close(s.ep)
}

// ------------------------------------------------------------------ phases

func (s *swarm) runUntil(done func() bool, timeout time.Duration, what string) error {
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			return timeoutf("%s: not done after %.0fs", what, timeout.Seconds())
		}
		s.poll(20)
	}
	return nil
}

// drain reads and discards everything for a while.
func (s *swarm) drain(d time.Duration) {
	s.handle = discard
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s.poll(10)
	}
}

// expectMarker reads until every conn in cs has seen marker; it returns the last
// arrival (swarm ns).
func (s *swarm) expectMarker(cs []*conn, marker []byte, timeout time.Duration) (int64, error) {
	left := 0
	for _, c := range cs {
		c.want = c.state != closed
		c.buf = c.buf[:0]
		if c.want {
			left++
		}
	}
	keep := len(marker)
	var last int64
	s.handle = func(c *conn, data []byte, now int64) {
		if !c.want {
			return
		}
		c.buf = append(c.buf, data...)
		if bytes.Contains(c.buf, marker) {
			c.want = false
			c.buf = c.buf[:0]
			left--
			last = now
		} else if len(c.buf) > keep {
			c.buf = append(c.buf[:0], c.buf[len(c.buf)-keep:]...)
		}
	}
	defer func() { s.handle = discard }()
	err := s.runUntil(func() bool { return left == 0 }, timeout,
		fmt.Sprintf("marker %q", marker))
	return last, err
}

// count is the burst's hot path: newlines counted, arrival time kept.
func count(c *conn, data []byte, now int64) {
	c.lines += int64(bytes.Count(data, []byte{'\n'}))
	c.markNs = now
}

// latency parses "@@<swarm ns>" stamps of complete lines into sink.
func latency(sink *[]int64) handler {
	return func(c *conn, data []byte, now int64) {
		c.buf = append(c.buf, data...)
		cut := bytes.LastIndexByte(c.buf, '\n') + 1
		whole := c.buf[:cut]
		for {
			i := bytes.Index(whole, []byte("@@"))
			if i < 0 {
				break
			}
			whole = whole[i+2:]
			var ts int64
			j := 0
			for j < len(whole) && whole[j] >= '0' && whole[j] <= '9' {
				ts = ts*10 + int64(whole[j]-'0')
				j++
			}
			if j > 0 {
				*sink = append(*sink, now-ts)
			}
			whole = whole[j:]
		}
		c.lines += int64(bytes.Count(c.buf[:cut], []byte{'\n'}))
		c.buf = append(c.buf[:0], c.buf[cut:]...)
	}
}
