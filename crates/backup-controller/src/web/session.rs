//! The page's session: the caller's bearer token in a signed, HttpOnly, SameSite=Strict cookie
//! (the token is checked with a TokenReview on every request, so a revoked token ends the
//! session), and a CSRF token derived from the session that every form must send back.
//!
//! Signatures are HMAC-SHA256 under a key every replica shares (`--session-key-file`), or a
//! random one per process (sessions then do not survive a restart or move between replicas).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "backupfleet_session";
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
        use std::io::Read;
        let mut bytes = vec![0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(SessionKey(bytes))
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

    /// The cookie value carrying `token` until `expires` (unix seconds).
    pub fn seal(&self, token: &str, expires: i64) -> String {
        let payload = format!("{expires}.{token}");
        let signature = self.mac("session", payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The token in a cookie value that this key signed and that has not expired at `now`.
    pub fn open(&self, value: &str, now: i64) -> Option<String> {
        let (payload, signature) = value.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        mac.update(b"session\0");
        mac.update(&payload);
        mac.verify_slice(&signature).ok()?;
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

/// The session cookie's value in a `Cookie` header.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}")
}

/// `Set-Cookie` that ends the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SessionKey {
        SessionKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires_and_only_under_its_key() {
        let sealed = key(1).seal("the-token", 1_000);
        assert_eq!(key(1).open(&sealed, 999).as_deref(), Some("the-token"));
        assert_eq!(key(1).open(&sealed, 1_000), None, "expired");
        assert_eq!(key(2).open(&sealed, 999), None, "another key");
        // Tampering with the payload (a later expiry) breaks the signature.
        let (_, signature) = sealed.split_once('.').unwrap();
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode("9999.the-token"));
        assert_eq!(key(1).open(&forged, 999), None);
        assert_eq!(key(1).open("garbage", 0), None);
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
        assert_eq!(
            from_cookie_header(&format!("a=1; {COOKIE}=v.s; b=2")),
            Some("v.s")
        );
        assert_eq!(from_cookie_header("a=1"), None);
        let set = set_cookie("v");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(SessionKey::new(vec![0; 8]).is_err());
    }
}
