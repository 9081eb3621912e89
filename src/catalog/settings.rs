//! The `[catalog]` table: which implementation holds the catalog, and where.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::{Invalid, resolve};

/// Where the catalog lives.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogConfig {
    Sqlite {
        path: PathBuf,
    },
    /// A PostgreSQL server; `url` may hold a password, so Debug leaves it out.
    Postgres {
        url: String,
    },
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            CatalogConfig::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &super::redact_url(url))
                .finish(),
        }
    }
}

/// The `[catalog]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    pub url: String,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            url: "sqlite:custodian.db".into(),
        }
    }
}

impl CatalogSettings {
    /// The catalog `url` names; a SQLite path is relative to `base`, the config's directory.
    pub fn validate(&self, base: &Path) -> Result<CatalogConfig, Invalid> {
        self.validate_in(base, cfg!(feature = "postgres"))
    }

    /// As [`CatalogSettings::validate`] in a build that has the PostgreSQL catalog or not (a
    /// parameter so that both answers are tested in every build).
    pub fn validate_in(&self, base: &Path, postgres_built: bool) -> Result<CatalogConfig, Invalid> {
        let url = &self.url;
        match url.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(CatalogConfig::Sqlite {
                path: resolve(base, Path::new(path)),
            }),
            Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => {
                if !postgres_built {
                    return Err(Invalid::at("url", super::POSTGRES_LEFT_OUT));
                }
                #[cfg(feature = "postgres")]
                super::postgres::check_url(url).map_err(|m| Invalid::at("url", m))?;
                Ok(CatalogConfig::Postgres { url: url.clone() })
            }
            _ => Err(Invalid::at(
                "url",
                format!(
                    "`{}` is not a catalog URL; use `sqlite:PATH` (relative to the config file) or `postgres://USER@HOST:PORT/DATABASE`",
                    super::redact_url(url)
                ),
            )),
        }
    }
}
