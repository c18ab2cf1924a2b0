//! Where keys may be sent: the Cloud App Security URL and the Entra authority are checked
//! against fixed host suffixes plus those the deployer listed, before any key leaves the account.

use std::net::IpAddr;

use reqwest::Url;

/// Tenant API hosts end in one of these.
pub const API_SUFFIXES: [&str; 2] = [".portal.cloudappsecurity.com", ".security.microsoft.com"];
/// Entra ID authorities (commercial, US government, China).
pub const AUTHORITY_HOSTS: [&str; 3] = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
];
/// The Entra authority used when the credentials name none.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The environment variable through which the deployer adds hosts (a relay, a sovereign cloud).
pub const ALLOWED_HOSTS_ENV: &str = "CLOUD_APP_SECURITY_ALLOWED_HOSTS";

/// Why a URL or an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL with a host.
    #[error("{0} is not a valid URL")]
    Invalid(String),
    #[error(
        "{0} is not an allowed host: https on *.portal.cloudappsecurity.com or *.security.microsoft.com, a host the \
         deployer listed in CLOUD_APP_SECURITY_ALLOWED_HOSTS, or http on loopback"
    )]
    /// A tenant URL outside the allow-list (the host is named).
    ApiHostNotAllowed(String),
    #[error(
        "{0} is not an allowed Entra authority: https on login.microsoftonline.com, login.microsoftonline.us, \
         login.partner.microsoftonline.cn, a host the deployer listed in CLOUD_APP_SECURITY_ALLOWED_HOSTS, or http on \
         loopback"
    )]
    /// An Entra authority outside the allow-list (the host is named).
    AuthorityNotAllowed(String),
    /// User info, a query or a fragment in the URL.
    #[error("the URL must not carry credentials, a query or a fragment")]
    Extras,
    #[error("CLOUD_APP_SECURITY_ALLOWED_HOSTS: {0:?} is not a host name or .suffix")]
    /// An entry of the deployer's list that is not a host name or `.suffix`.
    BadAllowedHost(String),
}

/// Hosts the deployer added, from the function's environment. A resource property never widens it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// Comma-separated hosts; `relay.example.com` allows that host and its subdomains,
    /// `.example.com` only subdomains.
    pub fn parse(value: &str) -> Result<AllowedHosts, EndpointError> {
        let mut hosts = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry = entry.to_ascii_lowercase();
            let name = entry.strip_prefix('.').unwrap_or(&entry);
            let valid = name.contains('.')
                && !name.starts_with('.')
                && !name.ends_with('.')
                && name.split('.').all(|label| !label.is_empty() && label.len() <= 63)
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                return Err(EndpointError::BadAllowedHost(entry));
            }
            hosts.push(entry);
        }
        Ok(AllowedHosts(hosts))
    }

    fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|entry| match entry.strip_prefix('.') {
            Some(_) => host.ends_with(entry.as_str()),
            None => host == entry || host.ends_with(&format!(".{entry}")),
        })
    }
}

/// Checks the tenant URL; returns it without a trailing slash.
pub fn api_url(raw: &str, extra: &AllowedHosts) -> Result<Url, EndpointError> {
    let url = parse(raw)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let host = host.as_str();
    let allowed = match url.scheme() {
        "https" => API_SUFFIXES.iter().any(|s| host.ends_with(s) && host.len() > s.len()) || extra.allows(host),
        "http" => is_loopback(host),
        _ => false,
    };
    allowed
        .then_some(url)
        .ok_or_else(|| EndpointError::ApiHostNotAllowed(host.to_owned()))
}

/// Checks an Entra authority.
pub fn authority(raw: &str, extra: &AllowedHosts) -> Result<Url, EndpointError> {
    let url = parse(raw)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let host = host.as_str();
    let allowed = match url.scheme() {
        "https" => AUTHORITY_HOSTS.contains(&host) || extra.allows(host),
        "http" => is_loopback(host),
        _ => false,
    };
    allowed
        .then_some(url)
        .ok_or_else(|| EndpointError::AuthorityNotAllowed(host.to_owned()))
}

fn parse(raw: &str) -> Result<Url, EndpointError> {
    let mut url = Url::parse(raw.trim()).map_err(|_| EndpointError::Invalid(raw.to_owned()))?;
    if url.host_str().is_none() {
        return Err(EndpointError::Invalid(raw.to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(EndpointError::Extras);
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// `localhost` or a loopback address: the only place plain `http` may go (tests, local runs).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `base` + `path segments`, keeping any path prefix of a relay.
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    ));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> AllowedHosts {
        AllowedHosts::default()
    }

    #[test]
    fn tenant_urls_on_the_microsoft_domains_pass() {
        for ok in [
            "https://contoso.us2.portal.cloudappsecurity.com",
            "https://contoso.us2.portal.cloudappsecurity.com/",
            "https://contoso.security.microsoft.com",
            "http://127.0.0.1:8080",
            "http://localhost:9",
            "http://[::1]:9",
        ] {
            assert!(api_url(ok, &none()).is_ok(), "{ok}");
        }
        assert_eq!(
            api_url("https://a.portal.cloudappsecurity.com/", &none())
                .unwrap()
                .path(),
            "/"
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "http://contoso.portal.cloudappsecurity.com",
            "https://portal.cloudappsecurity.com.evil.example",
            "https://evil.example/contoso.portal.cloudappsecurity.com",
            "https://.portal.cloudappsecurity.com",
            "https://security.microsoft.com.attacker.net",
            "http://10.0.0.1",
            "http://169.254.169.254",
            "ftp://contoso.portal.cloudappsecurity.com",
        ] {
            assert!(
                matches!(api_url(bad, &none()), Err(EndpointError::ApiHostNotAllowed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            api_url("https://u:p@a.portal.cloudappsecurity.com", &none()),
            Err(EndpointError::Extras)
        );
        assert_eq!(
            api_url("https://a.portal.cloudappsecurity.com/?x=1", &none()),
            Err(EndpointError::Extras)
        );
        assert!(matches!(api_url("not a url", &none()), Err(EndpointError::Invalid(_))));
    }

    #[test]
    fn the_deployer_may_add_hosts_and_suffixes() {
        let extra = AllowedHosts::parse("relay.example.com, .sovereign.example").unwrap();
        assert!(api_url("https://relay.example.com/cas", &extra).is_ok());
        assert!(api_url("https://eu.relay.example.com", &extra).is_ok());
        assert!(api_url("https://tenant.sovereign.example", &extra).is_ok());
        assert!(api_url("https://sovereign.example", &extra).is_err());
        assert!(api_url("https://notrelay.example.com", &extra).is_err());
        assert!(authority("https://login.sovereign.example", &extra).is_ok());
        for bad in ["*", "*.example.com", "localhost", "http://x.example", ".", "a..b"] {
            assert!(AllowedHosts::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorities_are_held_to_the_same_rule() {
        for ok in [
            "https://login.microsoftonline.com",
            "https://login.microsoftonline.us",
            "http://127.0.0.1:1",
        ] {
            assert!(authority(ok, &none()).is_ok(), "{ok}");
        }
        for bad in [
            "https://login.microsoftonline.com.evil.example",
            "https://evil.example",
            "http://login.microsoftonline.com",
        ] {
            assert!(
                matches!(authority(bad, &none()), Err(EndpointError::AuthorityNotAllowed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn join_keeps_a_relay_prefix() {
        let base = api_url(
            "https://relay.example.com/cas/",
            &AllowedHosts::parse("relay.example.com").unwrap(),
        )
        .unwrap();
        assert_eq!(
            join(&base, "/api/v1/x/").as_str(),
            "https://relay.example.com/cas/api/v1/x/"
        );
    }
}
