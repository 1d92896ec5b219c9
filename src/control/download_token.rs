//! The tokens of signed download URLs: which attachment, until when, and an HMAC-SHA256 of
//! both under `blobs.download_url_key`. The URL they go in needs no other credential, so a
//! token that does not verify, or whose time is past, is refused before anything is read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type Signer = Hmac<Sha256>;

/// Why a token was refused. The caller answers all of them alike, so that a prober learns
/// nothing from the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not one memwarden issued")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

fn signer(key: &[u8], payload: &str) -> Signer {
    // HMAC takes a key of any length.
    let mut mac = Signer::new_from_slice(key).expect("HMAC accepts every key length");
    mac.update(payload.as_bytes());
    mac
}

/// `<attachment>.<expiry, unix seconds>.<signature>`, all URL-safe.
pub fn sign(key: &[u8], attachment: Uuid, expires_at: i64) -> String {
    let payload = format!("{attachment}.{expires_at}");
    let signature = URL_SAFE_NO_PAD.encode(signer(key, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// The attachment a token names, if its signature holds and `now` (unix seconds) is before
/// its expiry.
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Uuid, TokenError> {
    let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    signer(key, payload)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let (id, expires_at) = payload.split_once('.').ok_or(TokenError::Malformed)?;
    let expires_at: i64 = expires_at.parse().map_err(|_| TokenError::Malformed)?;
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    id.parse().map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_verifies_until_it_expires_and_not_under_another_key() {
        let id = Uuid::new_v4();
        let token = sign(KEY, id, 1_000);
        assert_eq!(verify(KEY, &token, 999), Ok(id));
        assert_eq!(verify(KEY, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another key of thirty-two bytes!", &token, 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let id = Uuid::new_v4();
        let token = sign(KEY, id, 1_000);
        let later = token.replacen(".1000.", ".9999.", 1);
        assert_eq!(verify(KEY, &later, 999), Err(TokenError::BadSignature));
        let other = token.replacen(&id.to_string(), &Uuid::new_v4().to_string(), 1);
        assert_eq!(verify(KEY, &other, 999), Err(TokenError::BadSignature));
        let mut flipped = token.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verify(KEY, &flipped, 999).is_err());
        for junk in ["", ".", "..", "abc", "a.b.c", "a.b.!!!"] {
            assert!(verify(KEY, junk, 0).is_err(), "{junk:?}");
        }
    }
}
