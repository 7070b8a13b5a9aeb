//! Socket addresses from the caller's memory, decoded by family.

use std::net::{Ipv4Addr, Ipv6Addr};

use sensor_proto::v1::SocketAddress;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_NETLINK: u16 = 16;

/// Decodes a `struct sockaddr` as the kernel copied it; what cannot be decoded stays in `raw`.
pub fn decode(bytes: &[u8]) -> SocketAddress {
    let mut out = SocketAddress {
        raw: bytes.to_vec(),
        ..SocketAddress::default()
    };
    let Some(family) = bytes.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])) else {
        return out;
    };
    let port = || {
        bytes
            .get(2..4)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    match family {
        AF_INET => {
            out.family = "inet".into();
            if let Some(a) = bytes.get(4..8) {
                out.address = Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string();
                out.port = port().into();
            }
        }
        AF_INET6 => {
            out.family = "inet6".into();
            if let Some(a) = bytes.get(8..24) {
                let octets: [u8; 16] = a.try_into().unwrap_or_default();
                out.address = Ipv6Addr::from(octets).to_string();
                out.port = port().into();
            }
        }
        AF_UNIX => {
            out.family = "unix".into();
            let path = bytes.get(2..).unwrap_or_default();
            // An abstract name starts with NUL and runs to the address length.
            out.path = if path.first() == Some(&0) {
                path.to_vec()
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                path[..end].to_vec()
            };
        }
        AF_NETLINK => out.family = "netlink".into(),
        other => out.family = other.to_string(),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_inet6_and_unix_addresses_decode() {
        let inet = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut inet6 = vec![10, 0, 0, 80, 0, 0, 0, 0];
        inet6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let unix = b"\x01\x00/run/x.sock\x00";

        let a = decode(&inet);
        let b = decode(&inet6);
        let c = decode(unix);

        assert_eq!(
            (a.family.as_str(), a.address.as_str(), a.port),
            ("inet", "127.0.0.1", 8080)
        );
        assert_eq!(
            (b.family.as_str(), b.address.as_str(), b.port),
            ("inet6", "::1", 80)
        );
        assert_eq!(
            (c.family.as_str(), c.path.as_slice()),
            ("unix", &b"/run/x.sock"[..])
        );
        assert_eq!(decode(&[2]).family, "", "too short for a family: raw only");
    }
}
