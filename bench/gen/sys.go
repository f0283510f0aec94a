package main

// System calls on the hot paths, made without telling Go's scheduler. The Go wrappers
// (syscall.EpollWait, Read, Write) let the runtime hand this thread's P to another
// thread whenever a call takes more than ~20 us (a blocking wait, a 256 KiB copy), and
// taking it back cost more CPU than the reads: a profile of the block server showed
// 10% in that hand-off. Everything here is one goroutine on one locked thread, the
// sockets are non-blocking and every wait is bounded, so nothing else is kept waiting.

import (
	"syscall"
	"time"
	"unsafe"
)

// epollWait waits at most ms milliseconds; 0 events on error (EINTR included).
func epollWait(ep int, events []syscall.EpollEvent, ms int) int {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}

// read and write are read(2) and write(2) on a non-blocking socket; err is a
// syscall.Errno (EAGAIN when the kernel has nothing to give or no room).
func read(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, p) }

func write(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// pause sleeps without giving up the thread (nanosleep(2); an interrupted sleep is short).
func pause(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
