//! Where a server listens: the socket address to connect to and the `Host` it is named by.

use std::net::{SocketAddr, ToSocketAddrs};

use hyper::Uri;

use crate::error::{BenchError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address connections are opened to.
    pub address: SocketAddr,
    /// `host[:port]`, as sent in the `Host` header (and signed).
    pub authority: String,
}

impl Endpoint {
    /// Parses a plain-HTTP base URL such as `http://127.0.0.1:4599`.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let invalid = |reason: &str| BenchError::InvalidArgument {
            what: "URL",
            value: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(invalid("give the server's base URL, without a path"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let address = (authority.host(), port)
            .to_socket_addrs()
            .map_err(|error| invalid(&error.to_string()))?
            .next()
            .ok_or_else(|| invalid("the host name does not resolve"))?;
        Ok(Endpoint {
            address,
            authority: authority.as_str().to_owned(),
        })
    }

    /// The absolute URL of a path on this endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_parsed() {
        let endpoint = Endpoint::parse("http://127.0.0.1:4599").unwrap();
        assert_eq!(endpoint.address, "127.0.0.1:4599".parse().unwrap());
        assert_eq!(endpoint.authority, "127.0.0.1:4599");
        assert_eq!(endpoint.url("/x"), "http://127.0.0.1:4599/x");
        let endpoint = Endpoint::parse("http://127.0.0.1/").unwrap();
        assert_eq!(endpoint.address.port(), 80);
    }

    #[test]
    fn other_urls_are_refused() {
        assert!(Endpoint::parse("https://127.0.0.1:4599").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:4599/v1").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }
}
