//! Credentials for the local apiserver: bearer tokens for the admin and the non-admin user, and the service-account signing key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::RngCore;

use super::private_file::write_private_file;

/// User name of the admin identity (group `system:masters`).
pub const ADMIN_USER: &str = "sluice-test-admin";
/// User name of the non-admin identity: no permissions until a test grants
/// them with a (Cluster)RoleBinding, so RBAC is exercised for real.
pub const NON_ADMIN_USER: &str = "sluice-test-user";
/// Group the non-admin identity belongs to, besides `system:authenticated`.
pub const NON_ADMIN_GROUP: &str = "sluice-test-users";

/// Files and secrets the apiserver's authentication flags point at.
#[derive(Clone)]
pub struct Credentials {
    pub admin_token: String,
    pub user_token: String,
    pub token_file: PathBuf,
    pub service_account_public_key: PathBuf,
    pub service_account_signing_key: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("admin_token", &"<redacted>")
            .field("user_token", &"<redacted>")
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Generates fresh tokens and a service-account key pair into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let admin_token = random_token();
        let user_token = random_token();
        // Static token file format: token,user,uid,"group1,group2".
        let token_file = dir.join("tokens.csv");
        let tokens = format!(
            "{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n\
             {user_token},{NON_ADMIN_USER},{NON_ADMIN_USER},\"{NON_ADMIN_GROUP}\"\n"
        );
        write_private_file(&token_file, &tokens)?;

        let key_pair = rcgen::KeyPair::generate().context("generate service-account key pair")?;
        let service_account_signing_key = dir.join("service-account.key");
        let service_account_public_key = dir.join("service-account.pub");
        write_private_file(&service_account_signing_key, &key_pair.serialize_pem())?;
        write_private_file(&service_account_public_key, &key_pair.public_key_pem())?;

        Ok(Self {
            admin_token,
            user_token,
            token_file,
            service_account_public_key,
            service_account_signing_key,
        })
    }
}

fn random_token() -> String {
    let mut bytes = [0_u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
