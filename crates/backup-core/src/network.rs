//! Which addresses a project may make the controller connect to.
//!
//! A project names addresses (a store endpoint, a kubeconfig's server, etcd endpoints), but the
//! connection is made from the controller's network position, where the cloud's instance
//! metadata service hands out the controller's identity to anyone who asks. So every connection
//! made for a project is checked against an [`AddressPolicy`]: link-local ranges (169.254.0.0/16
//! and fe80::/10, where metadata services live), AWS's IPv6 metadata address, the unspecified
//! addresses and the well-known metadata host names are always refused, and the platform adds
//! the ranges of its own network (its nodes, its pods, loopback) with `--deny-cidrs`.
//!
//! The check applies to the address actually dialled: a literal IP in a URL, or every address a
//! name resolved to, per connection (so a name that resolves elsewhere the second time, DNS
//! rebinding, is caught). This module decides; the resolvers and connectors that ask it live in
//! the I/O crates (`backup-net`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Ranges no project may reach, whatever the platform says: link-local (metadata services of
/// AWS, GCP, Azure, OpenStack, ... live at 169.254.169.254), AWS's IPv6 metadata address, and the
/// unspecified addresses (which reach the local host).
pub const ALWAYS_DENIED_RANGES: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "0.0.0.0/8",
    "::/128",
];

/// Host names of metadata services; refused before any lookup, with a clearer message than the
/// address they resolve to would give.
pub const METADATA_HOST_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// A refused address: which host was asked for and, after resolution, which address it meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AddressDenied {
    /// The host as named (a name or an IP literal).
    pub host: String,
    /// The address it resolved to, when it was a name that resolved into a denied range.
    pub address: Option<IpAddr>,
    /// The denied range or name that matched.
    pub rule: String,
}

impl fmt::Display for AddressDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(address) if address.to_string() != self.host => write!(
                f,
                "`{}` resolves to {address}, in {}, which projects may not reach",
                self.host, self.rule
            ),
            _ => write!(
                f,
                "`{}` is in {}, which projects may not reach",
                self.host, self.rule
            ),
        }
    }
}

/// A CIDR that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a CIDR range: write it as 10.0.0.0/8 or fd00::/8")]
pub struct InvalidCidr {
    /// The text given.
    pub value: String,
}

/// The addresses projects may not make us connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPolicy {
    denied: Vec<IpNet>,
}

impl Default for AddressPolicy {
    /// Only the [`ALWAYS_DENIED_RANGES`].
    fn default() -> Self {
        Self::with_denied(Vec::new())
    }
}

impl AddressPolicy {
    /// The always-denied ranges plus `platform` (the platform's own networks).
    pub fn with_denied(platform: Vec<IpNet>) -> Self {
        let mut denied: Vec<IpNet> = ALWAYS_DENIED_RANGES
            .iter()
            .map(|r| r.parse().expect("the built-in ranges are valid CIDRs"))
            .collect();
        denied.extend(platform);
        Self { denied }
    }

    /// Parses comma-separated CIDRs (`--deny-cidrs 127.0.0.0/8,10.0.0.0/8`); a bare address is a
    /// range of one.
    pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, InvalidCidr> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidCidr {
                        value: s.to_string(),
                    })
            })
            .collect()
    }

    /// Every denied range, built-in first.
    pub fn denied(&self) -> &[IpNet] {
        &self.denied
    }

    /// Refuses `address` (the one actually dialled for `host`) when it lies in a denied range.
    /// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), AddressDenied> {
        let address = address.to_canonical();
        match self.denied.iter().find(|range| range.contains(&address)) {
            None => Ok(()),
            Some(range) => Err(AddressDenied {
                host: host.to_string(),
                address: Some(address),
                rule: range.to_string(),
            }),
        }
    }

    /// Refuses a host before it is looked up: a metadata service's name, or an IP literal in a
    /// denied range (`[v6]` brackets allowed). Names are checked again per resolved address.
    pub fn check_host(&self, host: &str) -> Result<(), AddressDenied> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = bare.parse::<IpAddr>() {
            return self.check_address(host, address);
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        match METADATA_HOST_NAMES.iter().find(|m| **m == name) {
            None => Ok(()),
            Some(m) => Err(AddressDenied {
                host: host.to_string(),
                address: None,
                rule: format!("the metadata service names ({m})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        let policy = AddressPolicy::default();
        for denied in [
            "169.254.169.254",
            "169.254.170.2",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            // IPv4-mapped IPv6 is the IPv4 address it carries.
            "::ffff:169.254.169.254",
        ] {
            let err = policy.check_address("h", ip(denied)).unwrap_err();
            assert_eq!(err.host, "h");
        }
        for allowed in ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "fd00:ec2::253"] {
            policy.check_address("h", ip(allowed)).unwrap();
        }
    }

    #[test]
    fn the_platform_adds_its_ranges() {
        let cidrs = AddressPolicy::parse_cidrs("127.0.0.0/8, ::1 ,10.0.0.0/8").unwrap();
        let policy = AddressPolicy::with_denied(cidrs);
        let err = policy
            .check_address("localhost", ip("127.0.0.1"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`localhost` resolves to 127.0.0.1, in 127.0.0.0/8, which projects may not reach"
        );
        assert!(policy.check_address("h", ip("::1")).is_err());
        assert!(policy.check_address("h", ip("::ffff:10.1.2.3")).is_err());
        policy.check_address("h", ip("192.168.1.1")).unwrap();
        assert_eq!(
            AddressPolicy::parse_cidrs("10.0.0.0/8,bogus")
                .unwrap_err()
                .value,
            "bogus"
        );
        assert_eq!(AddressPolicy::parse_cidrs(" , ").unwrap(), vec![]);
    }

    #[test]
    fn hosts_are_judged_before_lookup() {
        let policy = AddressPolicy::default();
        let err = policy.check_host("169.254.169.254").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`169.254.169.254` is in 169.254.0.0/16, which projects may not reach"
        );
        assert!(policy.check_host("[fe80::1]").is_err());
        let err = policy.check_host("Metadata.Google.Internal.").unwrap_err();
        assert!(err.to_string().contains("metadata service names"), "{err}");
        policy.check_host("s3.example.com").unwrap();
        policy.check_host("127.0.0.1").unwrap();
    }
}
