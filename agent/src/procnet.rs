//! Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}: the ports reachable from other
//! hosts (bound to a wildcard or non-loopback address).

/// Ports in the given file contents whose socket is listening (TCP state 0A) or bound
/// (UDP state 07) on an address other than loopback.
pub fn listening_ports(contents: &[(&str, bool)]) -> Vec<u16> {
    let mut ports = Vec::new();
    for (text, udp) in contents {
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 {
                continue;
            }
            let want = if *udp { "07" } else { "0A" };
            if fields[3] != want {
                continue;
            }
            let Some((addr, port)) = fields[1].split_once(':') else {
                continue;
            };
            let loopback = addr == "0100007F" || addr == "00000000000000000000000001000000";
            if loopback {
                continue;
            }
            if let Ok(p) = u16::from_str_radix(port, 16)
                && !ports.contains(&p)
            {
                ports.push(p);
            }
        }
    }
    ports.sort_unstable();
    ports
}

pub fn read_listening_ports() -> Vec<u16> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (tcp, tcp6, udp, udp6) = (
        read("/proc/net/tcp"),
        read("/proc/net/tcp6"),
        read("/proc/net/udp"),
        read("/proc/net/udp6"),
    );
    listening_ports(&[(&tcp, false), (&tcp6, false), (&udp, true), (&udp6, true)])
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_listening_sockets_and_skips_loopback() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
   2: 0A00000A:0D3D 0B00000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let tcp6 = "  sl  local_address remote_address st\n\
   0: 00000000000000000000000000000000:0D3D 00000000000000000000000000000000:0000 0A 0\n\
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0\n";
        let udp = "  sl  local_address rem_address   st\n   0: 00000000:0035 00000000:0000 07 0\n";
        assert_eq!(
            super::listening_ports(&[(tcp, false), (tcp6, false), (udp, true)]),
            vec![22, 53, 3389]
        );
    }
}
