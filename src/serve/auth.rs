//! Who may call the API.
//!
//! * On DECNET's database: DECNET's dashboard JWTs, validated as DECNET
//!   validates them (§3.2): HS256 with `DECNET_JWT_SECRET`; `exp`, `iat`,
//!   `iss` = `decnet`, `aud` = `decnet-dashboard`, `uuid` required; `typ` =
//!   `access`; a non-empty `jti` not in `revoked_tokens`; the `users` row of
//!   `uuid`, whose `tokens_valid_from` (whole seconds) must not follow `iat`.
//! * On our own database: bearer tokens from a file (`--tokens`).
//! * Without either: no authentication, and the server binds to loopback
//!   only.

use base64::Engine;
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Recorded as `set_by` of the rule states it sets.
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
}

/// How requests are authenticated.
pub enum Auth {
    Decnet { secret: Vec<u8> },
    Tokens(HashMap<String, User>),
    Open,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401, DECNET's "Could not validate credentials".
    Credentials,
    /// 403 before any role check.
    MustChangePassword,
}

/// Reads a tokens file: one `TOKEN ROLE [NAME]` per line (ROLE `viewer` or
/// `admin`; NAME defaults to `token-<line>`); blank lines and `#` comments
/// are skipped. Errors name the line.
pub fn read_tokens(path: &Path) -> Result<HashMap<String, User>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(token), Some(role)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "{}:{}: expected `TOKEN ROLE [NAME]` (ROLE: viewer or admin)",
                path.display(),
                n + 1
            ));
        };
        let Some(role) = Role::parse(role) else {
            return Err(format!(
                "{}:{}: role {role:?} is neither viewer nor admin",
                path.display(),
                n + 1
            ));
        };
        if token.len() < 16 {
            return Err(format!(
                "{}:{}: a token needs at least 16 characters",
                path.display(),
                n + 1
            ));
        }
        let name = parts
            .next()
            .map_or_else(|| format!("token-{}", n + 1), String::from);
        out.insert(
            token.to_string(),
            User {
                name,
                role,
                must_change_password: false,
            },
        );
    }
    if out.is_empty() {
        return Err(format!("{}: no token in the file", path.display()));
    }
    Ok(out)
}

impl Auth {
    /// The caller of a request with this `Authorization` header value.
    pub fn check(
        &self,
        header: Option<&[u8]>,
        db: Option<&Connection>,
        now: i64,
    ) -> Result<User, Denied> {
        match self {
            Auth::Open => Ok(User {
                name: "local".into(),
                role: Role::Admin,
                must_change_password: false,
            }),
            Auth::Tokens(tokens) => {
                let token = bearer(header).ok_or(Denied::Credentials)?;
                // Compared in constant time per candidate.
                tokens
                    .iter()
                    .find(|(t, _)| constant_eq(t.as_bytes(), token.as_bytes()))
                    .map(|(_, u)| u.clone())
                    .ok_or(Denied::Credentials)
            }
            Auth::Decnet { secret } => {
                let token = bearer(header).ok_or(Denied::Credentials)?;
                let claims = verify_jwt(token, secret, now).ok_or(Denied::Credentials)?;
                let db = db.ok_or(Denied::Credentials)?;
                let user = decnet_user(db, &claims).ok_or(Denied::Credentials)?;
                if user.must_change_password {
                    return Err(Denied::MustChangePassword);
                }
                Ok(user)
            }
        }
    }
}

/// The token of `Bearer <token>`: the scheme exactly so, as DECNET wants.
fn bearer(header: Option<&[u8]>) -> Option<&str> {
    let h = std::str::from_utf8(header?).ok()?;
    let t = h.strip_prefix("Bearer ")?;
    (!t.is_empty()).then_some(t)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The claims of an HS256 JWT signed with `secret`, checked as DECNET's
/// token decoder checks them; `None` if anything is wrong.
pub fn verify_jwt(token: &str, secret: &[u8], now: i64) -> Option<serde_json::Map<String, Value>> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&b64.decode(s).ok()?).ok()?;
    let Value::Object(claims) = serde_json::from_slice(&b64.decode(p).ok()?).ok()? else {
        return None;
    };
    let int = |k: &str| claims.get(k).and_then(Value::as_f64);
    let exp = int("exp")?;
    let iat = int("iat")?;
    if exp <= now as f64 || iat > now as f64 {
        return None;
    }
    if claims.get("iss")?.as_str()? != "decnet" {
        return None;
    }
    let aud_ok = match claims.get("aud")? {
        Value::String(a) => a == "decnet-dashboard",
        Value::Array(a) => a.iter().any(|x| x == "decnet-dashboard"),
        _ => false,
    };
    if !aud_ok || claims.get("typ")?.as_str()? != "access" {
        return None;
    }
    claims.get("uuid")?.as_str()?;
    if claims.get("jti")?.as_str()?.is_empty() {
        return None;
    }
    Some(claims)
}

fn decnet_user(db: &Connection, claims: &serde_json::Map<String, Value>) -> Option<User> {
    let uuid = claims.get("uuid")?.as_str()?;
    let jti = claims.get("jti")?.as_str()?;
    let iat = claims.get("iat")?.as_f64()?;
    let revoked: i64 = db
        .query_row(
            "SELECT count(*) FROM revoked_tokens WHERE jti = ?1",
            [jti],
            |r| r.get(0),
        )
        .ok()?;
    if revoked > 0 {
        return None;
    }
    let (name, role, must, valid_from): (String, String, bool, Option<String>) = db
        .query_row(
            "SELECT username, role, must_change_password, tokens_valid_from FROM users WHERE uuid = ?1",
            [uuid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .ok()??;
    if let Some(from) = valid_from.as_deref().and_then(crate::timefmt::parse_unix) {
        if iat < from as f64 {
            return None;
        }
    }
    Some(User {
        name,
        role: Role::parse(&role)?,
        must_change_password: must,
    })
}

/// An HS256 token as DECNET mints them, for tests and for operators who
/// script against a DECNET database.
pub fn mint_decnet_token(secret: &[u8], user_uuid: &str, jti: &str, iat: i64, exp: i64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "uuid": user_uuid, "jti": jti, "iat": iat, "exp": exp,
        "iss": "decnet", "aud": "decnet-dashboard", "typ": "access",
    });
    let payload = b64.encode(claims.to_string());
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"spec2-test-secret-0123456789abcdef0123456789";

    #[test]
    fn tokens_are_checked_as_decnet_checks_them() {
        let now = 1_800_000_000;
        let good = mint_decnet_token(SECRET, "u1", "j1", now - 10, now + 3600);
        assert!(verify_jwt(&good, SECRET, now).is_some());
        assert!(verify_jwt(&good, b"other-secret", now).is_none());
        let expired = mint_decnet_token(SECRET, "u1", "j1", now - 7200, now - 1);
        assert!(verify_jwt(&expired, SECRET, now).is_none());
        let no_jti = mint_decnet_token(SECRET, "u1", "", now - 10, now + 3600);
        assert!(verify_jwt(&no_jti, SECRET, now).is_none());
        let mut tampered = good.clone();
        tampered.push('x');
        assert!(verify_jwt(&tampered, SECRET, now).is_none());
        assert!(verify_jwt("not-a-jwt", SECRET, now).is_none());
        assert_eq!(bearer(Some(b"bearer abc")), None);
        assert_eq!(bearer(Some(b"Bearer abc")), Some("abc"));
    }

    #[test]
    fn a_tokens_file_names_its_bad_line() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(
            &p,
            "# ops\n0123456789abcdef0123 admin alice\n0123456789abcdef9999 viewer\n",
        )
        .unwrap();
        let t = read_tokens(&p).unwrap();
        assert_eq!(t["0123456789abcdef0123"].name, "alice");
        assert_eq!(t["0123456789abcdef9999"].role, Role::Viewer);
        std::fs::write(&p, "0123456789abcdef0123 root\n").unwrap();
        let e = read_tokens(&p).unwrap_err();
        assert!(e.contains(":1:") && e.contains("root"), "{e}");
        std::fs::write(&p, "short admin\n").unwrap();
        assert!(read_tokens(&p).unwrap_err().contains("16 characters"));
    }
}
