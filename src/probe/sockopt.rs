//! The few Linux socket options neither std nor socket2 expose: DF/path-MTU control and the
//! kernel's retransmit counter. Thin, checked wrappers around setsockopt/getsockopt.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Set DF on every datagram and never fragment locally (IP_PMTUDISC_DO): a datagram larger
/// than the route's MTU fails with EMSGSIZE instead of being split.
pub fn set_dont_fragment(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name, value) = if ipv6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    set_int(sock, level, name, value)
}

/// The kernel's current path MTU for a connected socket's destination (route MTU, lowered by
/// any ICMP "fragmentation needed" it has seen).
pub fn path_mtu(sock: &impl AsRawFd, ipv6: bool) -> io::Result<u32> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let v = get_int(sock, level, name)?;
    u32::try_from(v).map_err(|_| io::Error::other(format!("kernel reported MTU {v}")))
}

/// Segments the kernel retransmitted on this TCP connection so far (tcpi_total_retrans).
pub fn tcp_total_retrans(sock: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd, pointer and length describing `info`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(info.tcpi_total_retrans))
}

/// Waits until one of `fds` is ready or `timeout` passes (poll(2)); returns how many are
/// ready. An interrupted wait counts as "none ready".
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(e)
    }
}

/// A pollfd asking for `events` on `fd`.
pub fn pollfd(fd: &impl AsRawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

fn set_int(sock: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: valid fd; the option value is an int we own for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(sock: &impl AsRawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid fd; `value`/`len` describe an int we own.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_route_mtu_and_df() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect("127.0.0.1:9").unwrap();
        set_dont_fragment(&s, false).unwrap();
        let mtu = path_mtu(&s, false).unwrap();
        assert!(mtu >= 1280, "{mtu}");
        // One byte over the route MTU with DF set: refused locally, not fragmented.
        let big = vec![0u8; mtu as usize - 27];
        let err = s.send(&big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
    }

    #[test]
    fn retransmits_of_a_fresh_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(tcp_total_retrans(&c).unwrap(), 0);
    }
}

/// CPU time (user + system) this process has used so far, all threads, from getrusage(2).
pub fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage the kernel fills.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let a = super::process_cpu_seconds().unwrap();
        let mut x = 0u64;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = super::process_cpu_seconds().unwrap();
        assert!(b > a, "{a} -> {b}");
    }
}
