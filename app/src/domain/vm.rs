//! VM inventory fields.

use super::FieldErrors;
use super::jit::{MANAGEMENT_PORTS, Os, Port};
use std::net::IpAddr;

/// What a user typed into a JIT tab's search, trimmed: at most 100 characters, and no
/// control characters. PostgreSQL cannot hold a NUL in text, and SQLite's FTS5 ends a
/// query at one, so either answered such a search with an error instead of a refusal.
pub fn parse_search(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.chars().count() > 100 {
        return Err("Search for at most 100 characters.".into());
    }
    if text.chars().any(char::is_control) {
        return Err("A search holds no control characters.".into());
    }
    Ok(text.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    pub group: String,
    pub addresses: Vec<IpAddr>,
    pub os: Os,
    /// Management ports known to be listening and reachable (recorded by an admin until
    /// the agent reports them).
    pub exposed_ports: Vec<Port>,
}

fn parse_name(raw: &str, what: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("Enter a {what}."));
    }
    if name.chars().count() > 64 {
        return Err(format!("A {what} has at most 64 characters."));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("Use only letters, digits and - _ . in a {what}."));
    }
    Ok(name.to_owned())
}

impl VmSpec {
    pub fn parse(
        name: &str,
        group: &str,
        addresses: &str,
        os: &str,
        exposed_ports: &str,
    ) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = errors.check("name", parse_name(name, "VM name"));
        let group = errors.check("group", parse_name(group, "group name"));
        let mut addrs = Vec::new();
        for item in addresses
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            match item.parse::<IpAddr>() {
                Ok(ip) if !addrs.contains(&ip) => addrs.push(ip),
                Ok(_) => {}
                Err(_) => errors.add(
                    "addresses",
                    format!("'{item}' is not an IPv4 or IPv6 address."),
                ),
            }
        }
        if addrs.len() > 16 {
            errors.add("addresses", "At most 16 addresses.");
        }
        let os = errors.check("os", Os::parse(os));
        let mut ports = Vec::new();
        for item in exposed_ports
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            match Port::parse(item) {
                Ok(p) if !MANAGEMENT_PORTS.contains(&p.get()) => errors.add(
                    "exposed_ports",
                    format!("{p} is not a management port (22, 3389, 5985, 5986)."),
                ),
                Ok(p) if !ports.contains(&p) => ports.push(p),
                Ok(_) => {}
                Err(e) => errors.add("exposed_ports", format!("'{item}': {e}")),
            }
        }
        errors.into_result()?;
        match (name, group, os) {
            (Some(name), Some(group), Some(os)) => Ok(VmSpec {
                name,
                group,
                addresses: addrs,
                os,
                exposed_ports: ports,
            }),
            _ => Err(FieldErrors::single("name", "The VM is incomplete.")),
        }
    }

    pub fn addresses_text(&self) -> String {
        self.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn exposed_text(&self) -> String {
        self.exposed_ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_fields_parse_with_messages_per_field() {
        let vm =
            VmSpec::parse("web-1", "prod", "198.51.100.5, 2001:db8::5", "linux", "22").unwrap();
        assert_eq!(vm.addresses.len(), 2);
        assert_eq!(vm.exposed_text(), "22");
        let e = VmSpec::parse("web 1", "", "300.1.1.1", "beos", "8080, 99999").unwrap_err();
        for f in ["name", "group", "addresses", "os", "exposed_ports"] {
            assert!(e.get(f).is_some(), "{f}");
        }
    }

    #[test]
    fn a_search_is_short_text_without_control_characters() {
        assert_eq!(parse_search("  web-1 ").unwrap(), "web-1");
        assert_eq!(parse_search("Équipe \"x\"").unwrap(), "Équipe \"x\"");
        assert!(parse_search(&"x".repeat(100)).is_ok());
        assert!(parse_search(&"x".repeat(101)).is_err());
        assert!(parse_search("ab\0c").is_err());
        assert!(parse_search("a\tb").is_err());
    }
}
