// benchgen is chatd's native load generator (issue 16) and the trivial block server
// that proves its ceiling. The Python harness (python -m bench) starts it once per
// scenario run, pinned to the generator's core, and reads one JSON object of figures
// from its stdout:
//
//	benchgen burst|closed|paced|scale|hold -port P -proto chat|irc -server-pid PID [sizes]
//	benchgen serve-blocks -port P
//
// Exit status 3 means a bounded loop ran out of time (the message is on stderr).
// Only 127.0.0.1 is ever contacted or listened on, and the whole run is bounded by
// -limit seconds.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchgen burst|closed|paced|scale|hold|serve-blocks [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	port := fs.Int("port", 0, "server port on 127.0.0.1")
	proto := fs.String("proto", "chat", "chat or irc")
	pid := fs.Int("server-pid", 0, "the server's pid, for its CPU and memory")
	clk := fs.Float64("clk-tck", 100, "kernel clock ticks per second (/proc/<pid>/stat)")
	limit := fs.Float64("limit", 600, "hard bound on the whole run, seconds")
	var sz sizes
	fs.IntVar(&sz.receivers, "receivers", 200, "receiving clients")
	fs.IntVar(&sz.senders, "senders", 4, "sending clients")
	fs.IntVar(&sz.lines, "lines", 2000, "burst lines per sender")
	fs.IntVar(&sz.msgs, "msgs", 1000, "closed-loop messages")
	fs.Float64Var(&sz.rate, "rate", 50, "paced lines per second per sender")
	fs.Float64Var(&sz.seconds, "seconds", 5, "paced duration")
	fs.IntVar(&sz.lineText, "line-text", 100, "bytes of text per chat line")
	fs.IntVar(&sz.conns, "conns", 19000, "scale: idle clients")
	fs.IntVar(&sz.broadcasts, "broadcasts", 5, "scale: timed broadcasts")
	timeout := fs.Float64("timeout", 180, "scale: seconds allowed to connect")
	fs.IntVar(&sz.inflight, "inflight", 64, "handshakes in flight")
	fs.StringVar(&sz.massTarget, "mass-target", "", "scale on IRC: an oper's target reaching every user")
	_ = fs.Parse(os.Args[2:])
	sz.timeout = time.Duration(*timeout * float64(time.Second))

	// One core by design: the harness pins this process to the generator's core.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	time.AfterFunc(time.Duration(*limit*float64(time.Second)), func() {
		fmt.Fprintf(os.Stderr, "benchgen %s: stopped after the %.0fs limit\n", mode, *limit)
		os.Exit(3)
	})

	if mode == "serve-blocks" {
		if err := serveBlocks(*port); err != nil {
			fmt.Fprintln(os.Stderr, "serve-blocks:", err)
			os.Exit(1)
		}
		return
	}
	scenario := map[string]func(*swarm, sizes, *meter) (figures, error){
		"burst": burst, "closed": closedLoop, "paced": paced, "scale": scale, "hold": hold,
	}[mode]
	if scenario == nil || *port == 0 || (*proto != "chat" && *proto != "irc") {
		fmt.Fprintf(os.Stderr, "benchgen: bad mode %q, port or proto\n", mode)
		os.Exit(2)
	}
	irc := *proto == "irc"
	// On IRC the scale scenario's idle clients stay out of the channel.
	s, err := newSwarm(irc, *port, !(irc && (mode == "scale" || mode == "hold")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgen:", err)
		os.Exit(1)
	}
	out, err := scenario(s, sz, &meter{pid: *pid, clk: *clk})
	s.closeAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchgen %s: %v\n", mode, err)
		if _, ok := err.(errTimeout); ok {
			os.Exit(3)
		}
		os.Exit(1)
	}
	for k, v := range out {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(out, k) // JSON has no NaN; a missing figure shows as "-"
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}

// meter measures the generator's (this process, every thread) and the server's CPU
// over the measured interval, like the Python generator's _Meter.
type meter struct {
	pid    int
	clk    float64
	t0     time.Time
	g0, s0 float64
}

func (m *meter) begin() {
	m.t0 = time.Now()
	m.g0 = selfCPU()
	m.s0 = pidCPU(m.pid, m.clk)
}

func (m *meter) end(out figures) figures {
	wall := math.Max(time.Since(m.t0).Seconds(), 1e-9)
	gen := selfCPU() - m.g0
	server := pidCPU(m.pid, m.clk) - m.s0
	out["gen_cpu_s"] = gen
	out["gen_cpu_pct"] = 100 * gen / wall
	out["server_cpu_s"] = server
	out["server_cpu_pct"] = 100 * server / wall
	return out
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// pidCPU is user + system seconds of one process (threads included), 0 if it is gone.
func pidCPU(pid int, clk float64) float64 {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	text := string(raw)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fields[11], 64)
	s, _ := strconv.ParseFloat(fields[12], 64)
	return (u + s) / clk
}

// rssKiB is one process's resident set size in KiB, 0 if it is gone.
func rssKiB(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return 0
}
