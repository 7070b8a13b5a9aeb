//! The arguments of audited syscalls that are flags, modes, ids or enumerations, decoded into
//! words (`O_WRONLY|O_CREAT`, `0644`, `inet`), as `sensor.audit.decoded`.

use std::collections::BTreeMap;

/// Bit names, lowest first; bits left over are shown in hex.
type Bits = &'static [(u64, &'static str)];

const OPEN_FLAGS: Bits = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o40000, "O_DIRECT"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

const CLONE_NS: Bits = &[
    (0x0000_0080, "CLONE_NEWTIME"),
    (0x0000_0200, "CLONE_FS"),
    (0x0000_0400, "CLONE_FILES"),
    (0x0002_0000, "CLONE_NEWNS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
];

const MOUNT_FLAGS: Bits = &[
    (1, "MS_RDONLY"),
    (2, "MS_NOSUID"),
    (4, "MS_NODEV"),
    (8, "MS_NOEXEC"),
    (16, "MS_SYNCHRONOUS"),
    (32, "MS_REMOUNT"),
    (1024, "MS_NOATIME"),
    (4096, "MS_BIND"),
    (8192, "MS_MOVE"),
    (16384, "MS_REC"),
    (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"),
    (1 << 20, "MS_SHARED"),
];

const UMOUNT_FLAGS: Bits = &[
    (1, "MNT_FORCE"),
    (2, "MNT_DETACH"),
    (4, "MNT_EXPIRE"),
    (8, "UMOUNT_NOFOLLOW"),
];

const RENAME_FLAGS: Bits = &[
    (1, "RENAME_NOREPLACE"),
    (2, "RENAME_EXCHANGE"),
    (4, "RENAME_WHITEOUT"),
];

const SOCK_FLAGS: Bits = &[(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")];

/// Decoded arguments of syscall `name` called with `args`.
pub fn decode(name: &str, args: &[u64]) -> BTreeMap<String, String> {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        out.insert(k.to_string(), v);
    };
    match name {
        "open" | "openat" | "creat" => {
            let (flags, mode) = match name {
                "open" => (a(1), a(2)),
                "openat" => (a(2), a(3)),
                _ => (0o1101, a(1)),
            };
            put("flags", open_flags(flags));
            if flags & 0o100 != 0 || flags & 0o20000000 != 0 {
                put("mode", format!("{:04o}", mode & 0o7777));
            }
        }
        "chmod" | "fchmod" => put("mode", format!("{:04o}", a(1) & 0o7777)),
        "fchmodat" | "fchmodat2" => put("mode", format!("{:04o}", a(2) & 0o7777)),
        "chown" | "fchown" | "lchown" => {
            put("owner", id(a(1)));
            put("group", id(a(2)));
        }
        "fchownat" => {
            put("owner", id(a(2)));
            put("group", id(a(3)));
        }
        "setuid" | "setgid" | "setfsuid" | "setfsgid" => put("id", id(a(0))),
        "setreuid" | "setregid" => {
            put("real", id(a(0)));
            put("effective", id(a(1)));
        }
        "setresuid" | "setresgid" => {
            put("real", id(a(0)));
            put("effective", id(a(1)));
            put("saved", id(a(2)));
        }
        "unshare" => put("flags", bits(a(0), CLONE_NS)),
        "setns" => put("nstype", bits(a(1), CLONE_NS)),
        "mount" => put("flags", bits(a(3), MOUNT_FLAGS)),
        "umount2" => put("flags", bits(a(1), UMOUNT_FLAGS)),
        "renameat2" => put("flags", bits(a(4), RENAME_FLAGS)),
        "socket" => {
            put("domain", domain(a(0)));
            let kind = match a(1) & 0xf {
                1 => "SOCK_STREAM".to_string(),
                2 => "SOCK_DGRAM".into(),
                3 => "SOCK_RAW".into(),
                5 => "SOCK_SEQPACKET".into(),
                other => other.to_string(),
            };
            let extra = a(1) & !0xf;
            let kind = if extra == 0 {
                kind
            } else {
                format!("{kind}|{}", bits(extra, SOCK_FLAGS))
            };
            put("type", kind);
            put("protocol", a(2).to_string());
        }
        "bpf" => put("cmd", bpf_cmd(a(0))),
        _ => {}
    }
    out
}

fn open_flags(flags: u64) -> String {
    let access = match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = flags & !3;
    if rest == 0 {
        access.to_string()
    } else {
        format!("{access}|{}", bits(rest, OPEN_FLAGS))
    }
}

/// `A|B|0x40` for the named bits of `value` and what is left; `0` for none.
fn bits(value: u64, names: Bits) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut left = value;
    for &(bit, name) in names {
        if value & bit != 0 {
            parts.push(name.into());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("0x{left:x}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

/// An id argument; -1 (as a 32-bit value) means "unchanged".
fn id(v: u64) -> String {
    match v as u32 {
        u32::MAX => "unchanged".into(),
        id => id.to_string(),
    }
}

fn domain(v: u64) -> String {
    match v {
        1 => "unix".into(),
        2 => "inet".into(),
        10 => "inet6".into(),
        16 => "netlink".into(),
        17 => "packet".into(),
        other => other.to_string(),
    }
}

fn bpf_cmd(v: u64) -> String {
    const NAMES: [&str; 10] = [
        "BPF_MAP_CREATE",
        "BPF_MAP_LOOKUP_ELEM",
        "BPF_MAP_UPDATE_ELEM",
        "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD",
        "BPF_OBJ_PIN",
        "BPF_OBJ_GET",
        "BPF_PROG_ATTACH",
        "BPF_PROG_DETACH",
    ];
    NAMES
        .get(v as usize)
        .map_or_else(|| v.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_modes_ids_and_enumerations_decode() {
        let open = decode("openat", &[0, 0, 0o1101 | 0o2000000, 0o644]);
        let unshare = decode("unshare", &[0x0400_0000 | 0x1]);
        let socket = decode("socket", &[2, 1 | 0o2000000, 0]);
        let chown = decode("fchownat", &[0, 0, 1000, u32::MAX as u64]);

        assert_eq!(open["flags"], "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC");
        assert_eq!(open["mode"], "0644");
        assert_eq!(unshare["flags"], "CLONE_NEWUTS|0x1");
        assert_eq!(
            (socket["domain"].as_str(), socket["type"].as_str()),
            ("inet", "SOCK_STREAM|SOCK_CLOEXEC")
        );
        assert_eq!(
            (chown["owner"].as_str(), chown["group"].as_str()),
            ("1000", "unchanged")
        );
        assert!(decode("getpid", &[]).is_empty());
    }
}
