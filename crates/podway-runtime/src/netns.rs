//! Network-namespace primitives: loopback up, and connecting a socket inside a namespace.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace.
pub(crate) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the flags union member of `req`.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Connects to `127.0.0.1:port`, then `[::1]:port`, from a fresh thread that has joined the
/// network namespace at `netns`. The socket stays in that namespace after the thread ends.
pub(crate) fn connect_in(netns: &Path, port: u16) -> std::io::Result<TcpStream> {
    let netns: PathBuf = netns.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("podway-netns".into())
        .spawn(move || -> std::io::Result<TcpStream> {
            let ns = std::fs::File::open(&netns)?;
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let stream = match TcpStream::connect(v4) {
                Ok(s) => s,
                Err(e4) => TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
                    .map_err(|_| e4)?,
            };
            // Forwarded bytes go out as they come, as the kubelet's Go sockets do (no Nagle).
            stream.set_nodelay(true)?;
            Ok(stream)
        })?;
    thread
        .join()
        .map_err(|_| std::io::Error::other("network namespace thread panicked"))?
}
