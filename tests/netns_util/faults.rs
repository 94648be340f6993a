//! nftables rules that inject faults inside a namespace: random loss and
//! resets of established connections. Each rule set is one table,
//! `inet greenrt_fault`, with one input-hook chain; it goes away with the
//! namespace. (tc netem would add delay and reordering, but needs the
//! sch_netem qdisc, which kernels such as the one these tests were written
//! on do not have; nftables' `numgen` does loss without it.)

use std::process::{Command, Stdio};

use super::Netns;

/// Whether `nft` can be run; otherwise prints why the test skips.
pub fn nft_available() -> bool {
    match Command::new("nft")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: nft --version failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: nft (nftables) is not installed: {e}");
            false
        }
    }
}

/// Drops one in `one_in` TCP and UDP packets arriving on `dev`, at random
/// (`numgen random`). Packets with SYN set (the handshake) are spared: a
/// lost SYN costs a whole second's retransmission timeout, and the tests
/// are about data, which gets the loss.
pub fn loss(dev: &str, one_in: u32) -> String {
    format!(
        "table inet greenrt_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{dev}\" tcp flags & syn == syn accept
    iifname \"{dev}\" meta l4proto {{ tcp, udp }} numgen random mod {one_in} 0 drop
  }}
}}
"
    )
}

/// Answers one in `one_in` packets of established connections (no SYN,
/// no RST) arriving on `dev` for TCP port `port` with a reset, at random:
/// the sender's connection is reset, while the listening side (which never
/// sees the packet) is left half-open and must notice by itself (a read
/// timeout or keepalive).
pub fn resets(dev: &str, port: u16, one_in: u32) -> String {
    format!(
        "table inet greenrt_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{dev}\" tcp dport {port} tcp flags & (syn | rst) == 0 numgen random mod {one_in} 0 reject with tcp reset
  }}
}}
"
    )
}

/// Answers every later packet (no SYN, no RST) from TCP source port
/// `port` arriving on `dev` with a reset: one connection's client is reset
/// on its next packet, and its server is left half-open with nothing in
/// flight, so only a read timeout or keepalive can reclaim it (the
/// reset that answers a keepalive probe passes).
pub fn reset_from(dev: &str, port: u16) -> String {
    format!(
        "table inet greenrt_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{dev}\" tcp sport {port} tcp flags & (syn | rst) == 0 reject with tcp reset
  }}
}}
"
    )
}

/// Loads `rules` in `ns`, or prints why the test skips.
pub fn apply(ns: &Netns, rules: &str) -> bool {
    match ns.nft(rules) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: cannot load nftables rules: {e}");
            false
        }
    }
}
