//! Redirect URIs: registered exactly, matched byte for byte (DESIGN rule 1, RFC 9700 §2.1).
//! The one allowance is RFC 8252 §7.3: on a loopback IP literal, any port matches.

use super::Rejection;

pub const MAX_REDIRECT_URI: usize = 512;
pub const MAX_REDIRECT_URIS: usize = 8;

const LOOPBACK_PREFIXES: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

/// A URI a client may register: absolute https, or http on a loopback IP literal; printable
/// ASCII only, no fragment, no userinfo.
pub fn validate(uri: &str) -> Result<(), Rejection> {
    if uri.len() > MAX_REDIRECT_URI {
        return Err(Rejection::FieldTooLong {
            field: "redirect_uri",
            max: MAX_REDIRECT_URI,
        });
    }
    // `url` trims and normalises; the raw bytes must already be clean for byte comparison.
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Rejection::InvalidRedirectUri);
    }
    let parsed = url::Url::parse(uri).map_err(|_| Rejection::InvalidRedirectUri)?;
    let scheme_ok = match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => is_loopback(uri),
        _ => false,
    };
    let clean =
        parsed.fragment().is_none() && parsed.username().is_empty() && parsed.password().is_none();
    if scheme_ok && clean {
        Ok(())
    } else {
        Err(Rejection::InvalidRedirectUri)
    }
}

fn is_loopback(uri: &str) -> bool {
    LOOPBACK_PREFIXES.iter().any(|prefix| {
        uri.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
    })
}

/// The URI with the port of a loopback authority removed; other URIs unchanged.
fn without_loopback_port(uri: &str) -> std::borrow::Cow<'_, str> {
    for prefix in LOOPBACK_PREFIXES {
        if let Some(rest) = uri.strip_prefix(prefix)
            && let Some(after_colon) = rest.strip_prefix(':')
        {
            let digits = after_colon.bytes().take_while(u8::is_ascii_digit).count();
            return format!("{prefix}{}", &after_colon[digits..]).into();
        }
    }
    uri.into()
}

/// Does a requested redirect URI match this registered one? Byte for byte, but for the port of
/// a loopback URI. A requested URI that is not itself valid never matches.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    validate(requested).is_ok()
        && is_loopback(registered)
        && is_loopback(requested)
        && without_loopback_port(registered) == without_loopback_port(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_accepts_https_and_loopback_http_only() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:9/cb",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/cb",
            "http://app.example/cb",
            "http://localhost/cb",
            "http://127.0.0.1.evil/cb",
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            " https://app.example/cb",
            "javascript:alert(1)",
        ] {
            assert_eq!(validate(bad), Err(Rejection::InvalidRedirectUri), "{bad:?}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example:443/cb"));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(matches(
            "http://127.0.0.1:80/cb",
            "http://127.0.0.1:51234/cb"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/other"
        ));
        assert!(!matches("http://127.0.0.1/cb", "http://[::1]:51234/cb"));
    }
}
