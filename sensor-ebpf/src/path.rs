//! Paths rebuilt from the kernel's objects (dentries and mounts), never from syscall strings.
//!
//! `bpf_d_path` is not allowed in tp_btf programs, so the walk is done here: from the dentry up
//! to its mount's root, then across to the parent mount, until the root of the mount tree.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;
use sensor_common::{NAME_READ, PATH_BUF, PATH_COMPONENTS};

use crate::{
    kernel::{get_ptr, KPtr},
    maps::{off, PATH_LEN},
};

/// Outcome of writing one path into a record.
pub struct Written {
    /// Bytes written: components leaf first, each NUL-terminated.
    pub len: usize,
    /// The walk stopped before the root (too long or too deep); the tail is kept.
    pub truncated: bool,
}

/// Writes the path of `path` (a `struct path *`) into `dst`, which has room for
/// `PATH_REGION` bytes.
#[inline(always)]
pub fn write_path(path: KPtr, dst: *mut u8) -> Written {
    let mut out = Written {
        len: 0,
        truncated: true,
    };
    let Some(len) = PATH_LEN.get_ptr_mut(0) else {
        return out;
    };
    // SAFETY: `len` points at this CPU's slot of PATH_LEN; programs do not nest on one CPU.
    unsafe { *len = 0 };
    out.truncated = walk(path, dst, len);
    // SAFETY: as above.
    out.len = unsafe { core::ptr::read_volatile(len) } as usize;
    out
}

/// The walk itself; returns whether the path was cut. The running length lives in `*len`.
///
/// Every read is [`get_ptr`] (null when unreadable) rather than an `Option`: the compiler
/// copies an `Option`'s payload even when it is `None`, and kernels before 6.5 refuse a read of
/// the stack slot that was never written.
#[inline(always)]
fn walk(path: KPtr, dst: *mut u8, len: *mut u64) -> bool {
    let mut dentry = get_ptr(path, off!(path_dentry));
    let vfsmount = get_ptr(path, off!(path_mnt));
    if dentry.is_null() || vfsmount.is_null() {
        return true;
    }
    // container_of(vfsmount, struct mount, mnt)
    let mut mnt = vfsmount.wrapping_sub(off!(mount_mnt));
    for _ in 0..PATH_COMPONENTS {
        let mnt_root = get_ptr(mnt, off!(mount_mnt) + off!(vfsmount_mnt_root));
        if mnt_root == dentry {
            let parent_mnt = get_ptr(mnt, off!(mount_mnt_parent));
            let mountpoint = get_ptr(mnt, off!(mount_mnt_mountpoint));
            if parent_mnt.is_null() || mountpoint.is_null() || parent_mnt == mnt {
                return false;
            }
            mnt = parent_mnt;
            dentry = mountpoint;
            continue;
        }
        // SAFETY: `len` is this CPU's PATH_LEN slot.
        let at = unsafe { core::ptr::read_volatile(len) } as usize;
        if at >= PATH_BUF {
            return true;
        }
        let name = get_ptr(dentry, off!(dentry_d_name_name));
        if name.is_null() {
            return true;
        }
        // The mask is a no-op (len < PATH_BUF) that lets the verifier bound the write:
        // without it the destination is "unbounded memory access" past the map value.
        let at = at & (PATH_BUF - 1);
        // SAFETY: `dst + at` has NAME_READ bytes of room (the region is PATH_BUF + NAME_READ);
        // the helper reads at most NAME_READ bytes and never faults.
        let n = unsafe {
            bpf_probe_read_kernel_str(dst.wrapping_add(at).cast(), NAME_READ as u32, name.cast())
        };
        if n <= 0 {
            return true;
        }
        // SAFETY: as above.
        unsafe { *len = (at + n as usize) as u64 };
        let parent = get_ptr(dentry, off!(dentry_d_parent));
        if parent.is_null() || parent == dentry {
            // A dentry that is its own parent without being a mount root is a pseudo
            // filesystem's object (memfd, pipe, anonymous inode): its name is the whole path.
            return false;
        }
        dentry = parent;
    }
    true
}
