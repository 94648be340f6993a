//! The server-only mode's load client: one OS thread driving every
//! connection through one edge-triggered epoll set, so it costs little
//! CPU beside the server and adds no scheduling delay of its own (epoll's
//! ready list is FIFO): what it measures is the server's.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Conn {
    stream: TcpStream,
    written: usize,
    read: usize,
    /// No EAGAIN since the last edge in that direction.
    can_write: bool,
    can_read: bool,
    /// When the round trip in flight began; None once the sample is over
    /// for this connection.
    started: Option<Instant>,
}

/// Connections to one server with their epoll set.
pub struct Load {
    conns: Vec<Conn>,
    epoll: std::os::fd::OwnedFd,
    msg: Vec<u8>,
    buf: Vec<u8>,
}

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Load {
    pub fn connect(addr: SocketAddr, connections: usize, size: usize) -> Load {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain syscall; the fd it returns is owned by the
        // OwnedFd alone.
        let epoll = unsafe {
            std::os::fd::OwnedFd::from_raw_fd(
                cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC)).unwrap(),
            )
        };
        let conns = (0..connections)
            .map(|i| {
                // One at a time, within the server's listen backlog.
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                stream.set_nonblocking(true).unwrap();
                let mut ev = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
                    u64: i as u64,
                };
                // SAFETY: both fds are open; `ev` is a valid event.
                cvt(unsafe {
                    libc::epoll_ctl(
                        epoll.as_raw_fd(),
                        libc::EPOLL_CTL_ADD,
                        stream.as_raw_fd(),
                        &mut ev,
                    )
                })
                .unwrap();
                Conn {
                    stream,
                    written: 0,
                    read: 0,
                    can_write: true,
                    can_read: true,
                    started: None,
                }
            })
            .collect();
        Load {
            conns,
            epoll,
            msg: (0..size).map(|i| i as u8).collect(),
            buf: vec![0; size],
        }
    }

    /// Every connection does round trips back to back for `time`:
    /// returns the requests/s and the round trips' times.
    pub fn sample(&mut self, time: Duration) -> (f64, Vec<Duration>) {
        let start = Instant::now();
        let deadline = start + time;
        let mut latencies = Vec::new();
        let mut active = self.conns.len();
        for i in 0..self.conns.len() {
            self.conns[i].started = Some(Instant::now());
            self.drive(i, deadline, &mut latencies, &mut active);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        while active > 0 {
            // SAFETY: `events` has room for its length; the fd is open.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    1000,
                )
            };
            assert!(n > 0, "no echo for a second, or epoll_wait failed");
            for ev in &events[..n as usize] {
                let i = ev.u64 as usize;
                let c = &mut self.conns[i];
                c.can_read |= ev.events & libc::EPOLLIN as u32 != 0;
                c.can_write |= ev.events & libc::EPOLLOUT as u32 != 0;
                assert!(ev.events & libc::EPOLLERR as u32 == 0, "connection error");
                if c.started.is_some() {
                    self.drive(i, deadline, &mut latencies, &mut active);
                }
            }
        }
        (
            latencies.len() as f64 / start.elapsed().as_secs_f64(),
            latencies,
        )
    }

    /// Moves connection `i` on until it must wait.
    fn drive(&mut self, i: usize, deadline: Instant, lat: &mut Vec<Duration>, active: &mut usize) {
        let size = self.msg.len();
        let c = &mut self.conns[i];
        loop {
            if c.can_write && c.written < size {
                match c.stream.write(&self.msg[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => c.can_write = false,
                    Err(e) => panic!("send: {e}"),
                }
            }
            if c.can_read && c.read < size {
                match c.stream.read(&mut self.buf[c.read..]) {
                    Ok(0) => panic!("the server closed the connection"),
                    Ok(n) => c.read += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => c.can_read = false,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            if c.read == size {
                let now = Instant::now();
                lat.push(now - c.started.unwrap());
                assert!(self.buf == self.msg, "the echo differs from the message");
                c.read = 0;
                c.written = 0;
                if now >= deadline {
                    c.started = None;
                    *active -= 1;
                    return;
                }
                c.started = Some(now);
            } else if !(c.can_read || (c.can_write && c.written < size)) {
                return;
            }
        }
    }
}
