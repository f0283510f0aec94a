package main

// The trivial block server: the fastest chat server the generator can be pointed at,
// so that a burst against it measures the generator, not a server. It speaks just
// enough of chatd's line protocol for the harness (one welcome line, then other
// clients' lines): every read's complete lines become one block, built once, and the
// same bytes are written to every other client. No parsing, rendering or per-line
// work; what the kernel does not take is queued (bounded per client) and written on
// EPOLLOUT. It listens on 127.0.0.1 only.

import (
	"bytes"
	"syscall"
)

const maxQueued = 64 << 20 // a client further behind than this is dropped

type blockClient struct {
	fd      int
	index   int // in blockServer.clients
	partial []byte
	queue   [][]byte
	queued  int
}

type blockServer struct {
	ep      int
	byFd    map[int]*blockClient
	clients []*blockClient
}

func serveBlocks(port int) error {
	lfd, err := syscall.Socket(syscall.AF_INET,
		syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_ = syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := syscall.Listen(lfd, 4096); err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &ev); err != nil {
		return err
	}
	srv := &blockServer{ep: ep, byFd: map[int]*blockClient{}}
	events := make([]syscall.EpollEvent, 1024)
	rbuf := make([]byte, recvSize)
	welcome := []byte("*** Welcome to the block server.\r\n")
	for {
		n := epollWait(ep, events, 100) // a bounded wait keeps Go's timers (the -limit) alive
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == lfd {
				srv.accept(lfd, welcome)
				continue
			}
			c := srv.byFd[fd]
			if c == nil {
				continue
			}
			if events[i].Events&syscall.EPOLLOUT != 0 && !srv.flush(c) {
				continue
			}
			if events[i].Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
				continue
			}
			r, err := read(fd, rbuf)
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || r <= 0 {
				srv.drop(c)
				continue
			}
			data := rbuf[:r]
			if len(c.partial) > 0 {
				data = append(c.partial, data...)
			}
			cut := bytes.LastIndexByte(data, '\n') + 1
			block := append([]byte(nil), data[:cut]...)
			c.partial = append([]byte(nil), data[cut:]...)
			if cut == 0 {
				continue
			}
			for _, o := range append([]*blockClient(nil), srv.clients...) {
				if o != c {
					srv.write(o, block)
				}
			}
		}
	}
}

func (srv *blockServer) accept(lfd int, welcome []byte) {
	for {
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: all accepted; anything else: the client is gone
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if syscall.EpollCtl(srv.ep, syscall.EPOLL_CTL_ADD, fd, &ev) != nil {
			syscall.Close(fd)
			continue
		}
		c := &blockClient{fd: fd, index: len(srv.clients)}
		srv.byFd[fd] = c
		srv.clients = append(srv.clients, c)
		srv.write(c, welcome)
	}
}

// write hands the block to the kernel now, or queues it behind what is already waiting.
func (srv *blockServer) write(c *blockClient, block []byte) {
	if srv.byFd[c.fd] != c {
		return // dropped earlier in this fan-out
	}
	if len(c.queue) > 0 {
		c.queue = append(c.queue, block)
		c.queued += len(block)
		if c.queued > maxQueued {
			srv.drop(c)
		}
		return
	}
	n, err := write(c.fd, block)
	if err != nil {
		if err != syscall.EAGAIN {
			srv.drop(c)
			return
		}
		n = 0
	}
	if n < len(block) {
		c.queue = append(c.queue, block[n:])
		c.queued = len(block) - n
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT, Fd: int32(c.fd)}
		_ = syscall.EpollCtl(srv.ep, syscall.EPOLL_CTL_MOD, c.fd, &ev)
	}
}

// flush writes queued blocks until the kernel refuses; false if the client was dropped.
func (srv *blockServer) flush(c *blockClient) bool {
	for len(c.queue) > 0 {
		n, err := write(c.fd, c.queue[0])
		if err == syscall.EAGAIN {
			return true
		}
		if err != nil {
			srv.drop(c)
			return false
		}
		c.queued -= n
		if n < len(c.queue[0]) {
			c.queue[0] = c.queue[0][n:]
			return true
		}
		c.queue[0] = nil
		c.queue = c.queue[1:]
	}
	c.queue = nil
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
	_ = syscall.EpollCtl(srv.ep, syscall.EPOLL_CTL_MOD, c.fd, &ev)
	return true
}

func (srv *blockServer) drop(c *blockClient) {
	if srv.byFd[c.fd] != c {
		return
	}
	delete(srv.byFd, c.fd)
	_ = syscall.EpollCtl(srv.ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	last := srv.clients[len(srv.clients)-1]
	srv.clients[c.index] = last
	last.index = c.index
	srv.clients = srv.clients[:len(srv.clients)-1]
	c.queue = nil
}
