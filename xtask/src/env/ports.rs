//! Free TCP ports on 127.0.0.1, chosen when a component starts.
//!
//! A port is "free" when we can bind it on 127.0.0.1 right now. Between our check and the
//! component's own bind another process may take it; callers then retry with a fresh pick (see
//! `process::is_port_collision`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

/// Hands out distinct free ports on 127.0.0.1 for one `env up`.
#[derive(Debug, Default)]
pub struct PortPicker {
    handed_out: HashSet<u16>,
}

impl PortPicker {
    /// A picker that has handed out nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A free port: `preferred` when it is free and not already handed out (so a restarted
    /// environment keeps its ports where it can), otherwise one the kernel picks.
    pub fn pick(&mut self, preferred: Option<u16>) -> Result<u16> {
        if let Some(port) = preferred.filter(|p| *p != 0)
            && !self.handed_out.contains(&port)
            && is_free(port)
        {
            self.handed_out.insert(port);
            return Ok(port);
        }
        for _ in 0..100 {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("binding 127.0.0.1:0 to find a free port")?;
            let port = listener.local_addr()?.port();
            drop(listener);
            if self.handed_out.insert(port) {
                return Ok(port);
            }
        }
        anyhow::bail!("could not find a free port on 127.0.0.1 after 100 tries")
    }
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_skipped() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let busy = held.local_addr().unwrap().port();
        assert!(!is_free(busy));
        let mut picker = PortPicker::new();
        let port = picker.pick(Some(busy)).unwrap();
        assert_ne!(
            port, busy,
            "a port held by a listener must not be handed out"
        );
        assert!(is_free(port));
    }

    #[test]
    fn a_free_preferred_port_is_kept_and_never_handed_out_twice() {
        let mut picker = PortPicker::new();
        let first = picker.pick(None).unwrap();
        assert_eq!(picker.pick(Some(first)).ok().filter(|p| *p == first), None);
        let mut other = PortPicker::new();
        assert_eq!(other.pick(Some(first)).unwrap(), first);
        let many: HashSet<u16> = (0..20).map(|_| picker.pick(None).unwrap()).collect();
        assert_eq!(many.len(), 20);
    }
}
