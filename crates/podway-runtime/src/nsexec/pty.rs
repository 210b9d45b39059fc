//! A terminal for an exec, opened in the container's own devpts instance (as runc does, so
//! that the process sees `/dev/pts/N` of its container), and its master side as tokio streams.
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::WindowSize;

/// `openat2` resolution flags (`linux/openat2.h`).
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` below `root` with symlinks resolved inside `root` (`openat2` with
/// `RESOLVE_IN_ROOT`): a container's absolute symlink cannot lead to a file of the host.
pub(crate) fn open_in_root(
    root: &OwnedFd,
    path: &CStr,
    flags: libc::c_int,
) -> std::io::Result<OwnedFd> {
    // SAFETY: open_how is plain old data; zero is a valid value for each field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2(2) reads `path` and `how`, both alive across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// A new terminal of the container whose root is `root`: `(master, slave)`, sized `size`.
pub(crate) fn open(
    root: &OwnedFd,
    size: Option<WindowSize>,
) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = open_in_root(root, c"dev/ptmx", libc::O_RDWR | libc::O_NOCTTY)?;
    let meta = nix::sys::stat::fstat(&master)?;
    // The multiplexer is character device 5:2 (both /dev/ptmx and /dev/pts/ptmx).
    if meta.st_mode & libc::S_IFMT != libc::S_IFCHR || meta.st_rdev != (5 << 8 | 2) {
        return Err(std::io::Error::other(
            "the container's /dev/ptmx is not the pty multiplexer",
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &raw const unlock) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(size) = size {
        crate::tty::set_size(master.as_raw_fd(), size)?;
    }
    // SAFETY: TIOCGPTPEER opens the slave of this master and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// The master side as a reader (the terminal's output; EIO once every slave is closed) and a
/// writer (the terminal's input), and a descriptor for resizing.
pub(crate) fn streams(
    master: OwnedFd,
) -> std::io::Result<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
    OwnedFd,
)> {
    crate::util::set_nonblocking(std::os::fd::AsFd::as_fd(&master))?;
    let writer = master.try_clone()?;
    let resize = master.try_clone()?;
    Ok((
        tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(master)?,
        tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(writer)?,
        resize,
    ))
}
