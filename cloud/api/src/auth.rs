//! Customers' bearer tokens: JWTs checked with `jsonwebtoken` (HS256 with a
//! shared secret in development; RS256 or ES256 with the identity
//! provider's public key in production). A token names its customer in
//! `sub` and must carry `exp`; `iss` and `aud` are checked when configured.
//! Every failure is a [`AuthError`] the HTTP layer answers with 401.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use o2c_cloud_common::config::JwtConfig;
use o2c_protocol::CustomerId;
use serde::Deserialize;

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// Not signed by the configured key, or with another algorithm.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `sub` is missing or not a customer id.
    #[error("the token's subject is not a customer id: {0}")]
    BadSubject(String),
    /// Anything else: malformed, not yet valid, wrong issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    /// The `error` of the `WWW-Authenticate` challenge (RFC 6750).
    pub fn challenge(&self) -> &'static str {
        match self {
            AuthError::Missing => "invalid_request",
            _ => "invalid_token",
        }
    }
}

/// Why the verifier could not be built (a config error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The settings do not name a usable key.
    #[error(transparent)]
    Config(#[from] o2c_runtime::config::ConfigError),
    /// The key file cannot be read.
    #[error("api.jwt.public_key_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not a PEM public key of the algorithm.
    #[error("api.jwt.public_key_file {path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// Checks tokens against one key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier `[api.jwt]` describes.
    pub fn from_config(cfg: &JwtConfig) -> Result<Self, KeyError> {
        cfg.check()?;
        let pem = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let bad_key = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| KeyError::Key { path, source }
        };
        let (alg, key) = match (cfg.algorithm.as_str(), &cfg.public_key_file) {
            ("RS256", Some(p)) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(&pem(p)?).map_err(bad_key(p))?,
            ),
            ("ES256", Some(p)) => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(&pem(p)?).map_err(bad_key(p))?,
            ),
            // `check` allows nothing else.
            _ => (
                Algorithm::HS256,
                DecodingKey::from_secret(cfg.secret.as_deref().unwrap_or_default().as_bytes()),
            ),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &cfg.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &cfg.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The customer an `Authorization` header's token names.
    pub fn customer(&self, authorization: Option<&str>) -> Result<CustomerId, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName => AuthError::BadSignature,
                _ => AuthError::Invalid(e.to_string()),
            })?;
        let sub = data.claims.sub.unwrap_or_default();
        CustomerId::new(sub).map_err(|e| AuthError::BadSubject(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs() -> JwtConfig {
        JwtConfig {
            secret: Some(SECRET.into()),
            ..JwtConfig::default()
        }
    }

    fn now() -> u64 {
        u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
    }

    fn token(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
        encode(&Header::new(alg), &claims, key).expect("encode")
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn an_hs256_token_names_its_customer_and_each_failure_is_told_apart() {
        let v = Verifier::from_config(&hs()).expect("verifier");
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let good = token(
            Algorithm::HS256,
            &key,
            json!({"sub": "c-1", "exp": now() + 60}),
        );
        assert_eq!(
            v.customer(Some(&bearer(&good))).map(|c| c.to_string()),
            Ok("c-1".to_owned())
        );
        assert_eq!(v.customer(None), Err(AuthError::Missing));
        assert_eq!(v.customer(Some("Basic abc")), Err(AuthError::Missing));
        let expired = token(
            Algorithm::HS256,
            &key,
            json!({"sub": "c-1", "exp": now() - 3600}),
        );
        assert_eq!(v.customer(Some(&bearer(&expired))), Err(AuthError::Expired));
        let other = EncodingKey::from_secret(b"another secret, another secret!!");
        let forged = token(
            Algorithm::HS256,
            &other,
            json!({"sub": "c-1", "exp": now() + 60}),
        );
        assert_eq!(
            v.customer(Some(&bearer(&forged))),
            Err(AuthError::BadSignature)
        );
        let no_sub = token(Algorithm::HS256, &key, json!({"exp": now() + 60}));
        assert!(matches!(
            v.customer(Some(&bearer(&no_sub))),
            Err(AuthError::Invalid(_))
        ));
        let bad_sub = token(
            Algorithm::HS256,
            &key,
            json!({"sub": "a b", "exp": now() + 60}),
        );
        assert!(matches!(
            v.customer(Some(&bearer(&bad_sub))),
            Err(AuthError::BadSubject(_))
        ));
        assert!(matches!(
            v.customer(Some("Bearer not.a.jwt")),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn es256_and_rs256_verify_with_the_public_key_only() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        for (alg, name) in [(Algorithm::ES256, "es256"), (Algorithm::RS256, "rs256")] {
            let cfg = JwtConfig {
                algorithm: format!("{alg:?}"),
                public_key_file: Some(format!("{dir}/{name}-public.pem").into()),
                issuer: Some("https://id.example".into()),
                audience: Some("o2c".into()),
                ..JwtConfig::default()
            };
            let v = Verifier::from_config(&cfg).expect("verifier");
            let pem = std::fs::read(format!("{dir}/{name}-private.pem")).expect("key");
            let key = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
                _ => EncodingKey::from_rsa_pem(&pem),
            }
            .expect("private key");
            let claims = json!({"sub": "c-9", "exp": now() + 60,
                "iss": "https://id.example", "aud": "o2c"});
            let good = token(alg, &key, claims.clone());
            assert_eq!(
                v.customer(Some(&bearer(&good))).map(|c| c.to_string()),
                Ok("c-9".to_owned()),
                "{name}"
            );
            let mut wrong_aud = claims.clone();
            wrong_aud["aud"] = json!("someone-else");
            assert!(matches!(
                v.customer(Some(&bearer(&token(alg, &key, wrong_aud)))),
                Err(AuthError::Invalid(_))
            ));
            // An HS256 token made with the public key as its secret (the
            // classic algorithm confusion) is refused.
            let confused = token(
                Algorithm::HS256,
                &EncodingKey::from_secret(
                    &std::fs::read(format!("{dir}/{name}-public.pem")).expect("pub"),
                ),
                claims,
            );
            assert_eq!(
                v.customer(Some(&bearer(&confused))),
                Err(AuthError::BadSignature),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_key_settings_are_config_errors() {
        for cfg in [
            JwtConfig::default(),
            JwtConfig {
                secret: Some("short".into()),
                ..JwtConfig::default()
            },
            JwtConfig {
                algorithm: "none".into(),
                ..hs()
            },
            JwtConfig {
                algorithm: "ES256".into(),
                ..hs()
            },
        ] {
            assert!(Verifier::from_config(&cfg).is_err(), "{cfg:?}");
        }
        let missing = JwtConfig {
            algorithm: "RS256".into(),
            public_key_file: Some("/nonexistent.pem".into()),
            ..JwtConfig::default()
        };
        assert!(matches!(
            Verifier::from_config(&missing),
            Err(KeyError::Read { .. })
        ));
    }
}
