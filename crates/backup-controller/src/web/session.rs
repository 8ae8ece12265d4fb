//! The page's session: the caller's bearer token in an encrypted, HttpOnly, SameSite=Strict cookie
//! (the token is checked with a TokenReview on every request, so a revoked token ends the
//! session), and a CSRF token derived from the session that every form must send back.
//!
//! Cookies are sealed with ChaCha20-Poly1305 and CSRF tokens are HMAC-SHA256, both under keys
//! derived from one every replica shares (`--session-key-file`), or a random one per process
//! (sessions then do not survive a restart or move between replicas).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a session lasts, in seconds (the token may expire earlier).
pub const MAX_AGE_SECONDS: i64 = 8 * 3600;

/// The signing key.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A key from bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!(
                "a session key needs at least 32 bytes, this one has {}: e.g. `head -c 32 \
                 /dev/urandom > key`",
                bytes.len()
            ));
        }
        Ok(SessionKey(bytes))
    }

    /// A random key from the kernel.
    pub fn random() -> std::io::Result<Self> {
        Ok(SessionKey(random_bytes()?))
    }

    fn mac(&self, purpose: &str, message: &[u8]) -> Vec<u8> {
        // The key accepts any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// The cipher that seals session cookies, under a key derived from this one.
    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.mac("session-cipher", b"")))
    }

    /// The cookie value carrying `token` until `expires` (unix seconds): encrypted and
    /// authenticated, so the cookie shows nothing of the token, and a changed cookie opens to
    /// nothing. The nonce is derived from what it seals (the same session seals to the same
    /// value, which tells nothing new), so sealing needs no randomness that could fail.
    pub fn seal(&self, token: &str, expires: i64) -> Result<String, String> {
        let payload = format!("{expires}.{token}");
        let nonce_bytes = self.mac("session-nonce", payload.as_bytes());
        let nonce = Nonce::from_slice(&nonce_bytes[..12]);
        let sealed = self
            .cipher()
            .encrypt(nonce, payload.as_bytes())
            .map_err(|_| "the token is too long to keep in a session".to_string())?;
        let mut value = nonce.to_vec();
        value.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(value))
    }

    /// The token in a cookie value that this key sealed and that has not expired at `now`.
    pub fn open(&self, value: &str, now: i64) -> Option<String> {
        let value = URL_SAFE_NO_PAD.decode(value).ok()?;
        if value.len() < 12 {
            return None;
        }
        let (nonce, sealed) = value.split_at(12);
        let payload = self
            .cipher()
            .decrypt(Nonce::from_slice(nonce), sealed)
            .ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let (expires, token) = payload.split_once('.')?;
        (expires.parse::<i64>().ok()? > now).then(|| token.to_string())
    }

    /// The CSRF token of the session whose cookie value is `session`.
    pub fn csrf(&self, session: &str) -> String {
        hex::encode(self.mac("csrf", session.as_bytes()))
    }

    /// Whether `sent` is the CSRF token of `session` (compared in constant time).
    pub fn csrf_ok(&self, session: &str, sent: &str) -> bool {
        let Ok(sent) = hex::decode(sent) else {
            return false;
        };
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return false,
        };
        mac.update(b"csrf\0");
        mac.update(session.as_bytes());
        mac.verify_slice(&sent).is_ok()
    }
}

/// 32 random bytes from the kernel.
fn random_bytes() -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A random cookie value (hex).
pub fn random_value() -> std::io::Result<String> {
    Ok(hex::encode(random_bytes()?))
}

/// How the page's cookies are set. Over TLS: `Secure` with the `__Host-` prefix, so the
/// browser sends them only over HTTPS, only to this host, and no other site or subdomain can
/// set them. Over plain HTTP (`--api-plain-http`, for local use): the same without those.
/// Always HttpOnly and SameSite=Strict.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// Whether the page is served over TLS.
    pub secure: bool,
}

/// The session cookie's name (behind `__Host-` over TLS).
const SESSION: &str = "backupfleet_session";

/// The sign-in form's cookie: a random value the form's CSRF token is derived from. Sent only
/// from this site (SameSite=Strict), so a form another site posts cannot sign a visitor in as
/// someone else (login CSRF).
const SIGNIN: &str = "backupfleet_signin";

impl Cookies {
    fn name(&self, base: &str) -> String {
        match self.secure {
            true => format!("__Host-{base}"),
            false => base.to_string(),
        }
    }

    fn set(&self, base: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age={max_age}",
            self.name(base)
        )
    }

    /// `Set-Cookie` for a new session.
    pub fn set_session(&self, value: &str) -> String {
        self.set(SESSION, value, MAX_AGE_SECONDS)
    }

    /// `Set-Cookie` that ends the session.
    pub fn clear_session(&self) -> String {
        self.set(SESSION, "", 0)
    }

    /// `Set-Cookie` for the sign-in form's `value`.
    pub fn set_signin(&self, value: &str) -> String {
        self.set(SIGNIN, value, 3600)
    }

    /// The session cookie's value in a `Cookie` header.
    pub fn session_in<'a>(&self, header: &'a str) -> Option<&'a str> {
        cookie_value(header, &self.name(SESSION))
    }

    /// The sign-in form's cookie's value in a `Cookie` header.
    pub fn signin_in<'a>(&self, header: &'a str) -> Option<&'a str> {
        cookie_value(header, &self.name(SIGNIN))
    }
}

/// Cookie `name`'s value in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value)
}

impl SessionKey {
    /// The sign-in form's CSRF token for its cookie `value`.
    pub fn signin_csrf(&self, value: &str) -> String {
        self.csrf(&format!("signin:{value}"))
    }

    /// Whether `sent` is the sign-in form's CSRF token for its cookie `value`.
    pub fn signin_csrf_ok(&self, value: &str, sent: &str) -> bool {
        self.csrf_ok(&format!("signin:{value}"), sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SessionKey {
        SessionKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires_and_only_under_its_key() {
        let sealed = key(1).seal("the-token", 1_000).unwrap();
        assert_eq!(key(1).open(&sealed, 999).as_deref(), Some("the-token"));
        assert_eq!(key(1).open(&sealed, 1_000), None, "expired");
        assert_eq!(key(2).open(&sealed, 999), None, "another key");
        // Any changed byte (a later expiry, say) opens to nothing.
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in [0, 12, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(key(1).open(&URL_SAFE_NO_PAD.encode(&bytes), 999), None);
            bytes[i] ^= 1;
        }
        assert_eq!(key(1).open("garbage", 0), None);
        assert_eq!(key(1).open("", 0), None);
    }

    #[test]
    fn the_cookie_shows_nothing_of_the_token() {
        let token = "eyJhbGciOiJSUzI1NiJ9.the-service-account-token";
        let sealed = key(4).seal(token, 1_000).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for shown in [sealed.as_bytes(), bytes.as_slice()] {
            assert!(
                !shown
                    .windows(8)
                    .any(|w| token.as_bytes().windows(8).any(|t| t == w)),
                "the cookie shows part of the token: {sealed}"
            );
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let k = key(3);
        let csrf = k.csrf("session-a");
        assert!(k.csrf_ok("session-a", &csrf));
        assert!(!k.csrf_ok("session-b", &csrf));
        assert!(!k.csrf_ok("session-a", "00"));
        assert!(!k.csrf_ok("session-a", "not hex"));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_is_locked_down() {
        let plain = Cookies { secure: false };
        assert_eq!(
            plain.session_in("a=1; backupfleet_session=v.s; b=2"),
            Some("v.s")
        );
        assert_eq!(plain.session_in("a=1"), None);
        let set = plain.set_session("v");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"), "{set}");
        assert!(SessionKey::new(vec![0; 8]).is_err());
    }

    #[test]
    fn over_tls_cookies_are_host_only_and_secure() {
        let tls = Cookies { secure: true };
        let set = tls.set_session("v");
        assert!(
            set.starts_with("__Host-backupfleet_session=v;")
                && set.contains("; Path=/;")
                && set.contains("; Secure")
                && !set.contains("Domain"),
            "{set}"
        );
        assert!(
            tls.set_signin("n")
                .starts_with("__Host-backupfleet_signin=n;")
        );
        // A cookie without the prefix (set over plain HTTP, or by a sibling host) is not it.
        assert_eq!(tls.session_in("backupfleet_session=forged"), None);
        assert_eq!(tls.session_in("__Host-backupfleet_session=v"), Some("v"));
    }
}
