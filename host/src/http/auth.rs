//! Bearer tokens: who is calling. A tenant token stands for exactly one
//! tenant, and that tenant is the only one its requests can see or emit for;
//! nothing in a request can name another. The admin token is the operator's
//! and opens `/v1/admin/…` only.
//!
//! Tokens are kept as SHA-256 digests and a presented token is hashed, then
//! compared with every known digest in constant time: the comparison takes
//! the same time whatever the bytes and length of a wrong token, so timing
//! tells an attacker nothing about how close a guess was.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::ApiError;
use crate::config::TokensSection;

/// The tokens the API accepts. Its `Debug` shows no token or digest.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    role: Role,
}

/// Who a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    Tenant(String),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "roles",
                &self.entries.iter().map(|e| &e.role).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Tokens {
    /// The tokens of the configuration's `[tokens]` (already checked there:
    /// long enough, and none given twice).
    pub fn from_config(section: &TokensSection) -> Self {
        let mut tokens = Self::default();
        if let Some(admin) = &section.admin {
            tokens.add(admin, Role::Admin);
        }
        for (tenant, token) in section.tenant_tokens() {
            tokens.add(token, Role::Tenant(tenant.to_owned()));
        }
        tokens
    }

    pub fn add(&mut self, token: &str, role: Role) {
        self.entries.push(Entry {
            digest: Sha256::digest(token.as_bytes()).into(),
            role,
        });
    }

    pub fn has_admin(&self) -> bool {
        self.entries.iter().any(|e| e.role == Role::Admin)
    }

    pub fn tenant_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.role, Role::Tenant(_)))
            .count()
    }

    /// The role of `token`, if it is one of ours. Every entry is compared,
    /// matching or not.
    pub fn role(&self, token: &str) -> Option<&Role> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(&entry.role);
            }
        }
        found
    }

    /// Whether `headers` carry a tenant's token.
    pub fn is_tenant(&self, headers: &axum::http::HeaderMap) -> bool {
        matches!(self.role_of(headers), Ok(Role::Tenant(_)))
    }

    /// The role of the request's `Authorization: Bearer …` token.
    fn authenticate(&self, parts: &Parts) -> Result<&Role, ApiError> {
        self.role_of(&parts.headers)
    }

    fn role_of(&self, headers: &axum::http::HeaderMap) -> Result<&Role, ApiError> {
        let header = headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing token: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        self.role(token)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}

/// The tenant a request acts for, from its token. Extracting it refuses
/// requests without a tenant token.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl FromRequestParts<Arc<ApiState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        match state.tokens.authenticate(parts)? {
            Role::Tenant(tenant) => Ok(Self(tenant.clone())),
            Role::Admin => Err(ApiError::forbidden(
                "the admin token acts for no tenant; use the tenant's token",
            )),
        }
    }
}

/// Proof that a request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        match state.tokens.authenticate(parts)? {
            Role::Admin => Ok(Self),
            Role::Tenant(_) => Err(ApiError::forbidden(
                "operator endpoints take the admin token, not a tenant's",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let mut tokens = Tokens::default();
        tokens.add("admin-token-0123456789", Role::Admin);
        tokens.add("acme-token-0123456789", Role::Tenant("org_acme".into()));
        tokens.add("beta-token-0123456789", Role::Tenant("org_beta".into()));
        tokens
    }

    #[test]
    fn finds_the_role_of_each_known_token_and_none_for_others() {
        let tokens = tokens();
        assert_eq!(tokens.role("admin-token-0123456789"), Some(&Role::Admin));
        assert_eq!(
            tokens.role("beta-token-0123456789"),
            Some(&Role::Tenant("org_beta".into()))
        );
        assert_eq!(tokens.role("beta-token-012345678"), None);
        assert_eq!(tokens.role(""), None);
        assert!(tokens.has_admin());
        assert_eq!(tokens.tenant_count(), 2);
    }

    #[test]
    fn never_prints_a_token_or_its_digest() {
        let printed = format!("{:?}", tokens());
        assert!(!printed.contains("token-0123"), "{printed}");
        assert!(printed.contains("org_acme"), "{printed}");
    }
}
