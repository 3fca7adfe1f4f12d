//! Loading a handler: read the component and its manifest, check its imports
//! against the allow-list, detect its shape, and prepare it for fast
//! instantiation. Everything that can be decided once per module is decided
//! here, off the delivery path.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

use super::manifest::Manifest;
use super::{InvocationState, Sandbox};
use crate::limits::Limits;

/// The name every handler world exports.
pub const EXPORT_NAME: &str = "handle-signal";

/// Which of the three handler worlds a component targets (ARCHITECTURE.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `handle-signal(signal, tenant, context)`.
    SignalTenantContext,
    /// `handle-signal(signal, context)`.
    SignalContext,
    /// `handle-signal(signal)`; discouraged.
    Signal,
}

impl Shape {
    pub fn describe(self) -> &'static str {
        match self {
            Shape::SignalTenantContext => "handle-signal(signal, tenant, context)",
            Shape::SignalContext => "handle-signal(signal, context)",
            Shape::Signal => "handle-signal(signal)",
        }
    }
}

/// Which imports a component may have. An import is allowed when its name
/// starts with one of the prefixes: `wasi:cli/` allows
/// `wasi:cli/environment@0.2.6`.
///
/// The policy is the second wall, not the first: the WASI context grants
/// nothing whatever is imported (no preopened directory, no environment,
/// every network use denied; see `Sandbox::new_store`). The interfaces that
/// language runtimes import whether or not the handler uses them
/// (`wasi:filesystem` and `wasi:sockets` for CPython, `wasi:filesystem` for
/// componentize-js) are therefore allowed, and each of their calls fails
/// with an error the guest sees. `wasi:http` and anything unknown stay refused at load, which
/// tells the author at once that the module cannot work here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPolicy {
    pub allowed_prefixes: Vec<String>,
}

impl Default for ImportPolicy {
    fn default() -> Self {
        Self {
            allowed_prefixes: [
                "sighost:handler/",
                "wasi:io/",
                "wasi:cli/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:filesystem/",
                "wasi:sockets/",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

impl ImportPolicy {
    pub fn allows(&self, import: &str) -> bool {
        self.allowed_prefixes
            .iter()
            .any(|prefix| import.starts_with(prefix.as_str()))
    }
}

/// Why a handler could not be loaded. Each message names the file (or the
/// name the handler was loaded under) and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: a handler name is lowercase letters, digits, '-' and '_'; {name:?} is not")]
    InvalidName { origin: String, name: String },
    #[error("{origin}: invalid manifest: {message}")]
    Manifest { origin: String, message: String },
    #[error("{origin}: not a valid WebAssembly component: {message}")]
    NotAComponent { origin: String, message: String },
    #[error("{origin}: imports {}, which handlers may not use (allowed: {allowed})", imports.join(", "))]
    ForbiddenImport {
        origin: String,
        /// Every refused import, in the component's order.
        imports: Vec<String>,
        allowed: String,
    },
    /// A valid component that does not fit this host's instance pool.
    #[error("{origin}: over this host's limits: {message}")]
    OverLimit { origin: String, message: String },
    #[error("{origin}: {message}")]
    Shape { origin: String, message: String },
    #[error("{origin}: limits: {message}")]
    Limits { origin: String, message: String },
    #[error("{origin}: cannot be instantiated: {message}")]
    Instantiate { origin: String, message: String },
}

/// A loaded handler, ready to be invoked any number of times, concurrently.
pub struct Handler {
    pub name: String,
    /// Lowercase hex SHA-256 of the component's bytes: the handler's identity
    /// together with its name, recorded on every delivery it runs.
    pub digest: String,
    pub shape: Shape,
    pub manifest: Manifest,
    /// The host's limits with the manifest's overrides applied.
    pub limits: Limits,
    /// `manifest.options` serialized once, since every context carries it.
    pub(super) options_json: String,
    pub(super) allowed_directives: Arc<[String]>,
    pub(super) pre: InstancePre<InvocationState>,
    pub(super) export: ComponentExportIndex,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_handler_name(origin: &str, name: &str) -> Result<(), LoadError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(LoadError::InvalidName {
            origin: origin.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl Sandbox {
    /// Loads `<dir>/<name>.wasm` with its `<name>.toml` manifest, if any.
    pub fn load_file(&self, wasm: &Path) -> Result<Handler, LoadError> {
        let origin = wasm.display().to_string();
        let name = wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        check_handler_name(&origin, &name)?;
        let bytes = std::fs::read(wasm).map_err(|source| LoadError::Read {
            origin: origin.clone(),
            source,
        })?;
        let manifest = Manifest::for_module(wasm).map_err(|message| LoadError::Manifest {
            origin: origin.clone(),
            message,
        })?;
        self.load_bytes(&name, &bytes, manifest, &origin)
    }

    /// Loads a handler from its bytes. `origin` names where the bytes came
    /// from in error messages.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Manifest,
        origin: &str,
    ) -> Result<Handler, LoadError> {
        check_handler_name(origin, name)?;
        let limits = manifest.limits.apply(&self.config.limits);
        self.check_limits(&limits)
            .map_err(|message| LoadError::Limits {
                origin: origin.to_owned(),
                message,
            })?;
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            let message = format!("{e:#}");
            match super::pool::over_limit(&message) {
                Some(message) => LoadError::OverLimit {
                    origin: origin.to_owned(),
                    message,
                },
                None => LoadError::NotAComponent {
                    origin: origin.to_owned(),
                    message,
                },
            }
        })?;
        let refused: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import)
            .filter(|import| !self.config.import_policy.allows(import))
            .map(str::to_owned)
            .collect();
        if !refused.is_empty() {
            return Err(LoadError::ForbiddenImport {
                origin: origin.to_owned(),
                imports: refused,
                allowed: self.config.import_policy.allowed_prefixes.join(", "),
            });
        }
        let shape = detect_shape(&component, &self.engine).map_err(|message| LoadError::Shape {
            origin: origin.to_owned(),
            message,
        })?;
        let export = component
            .get_export_index(None, EXPORT_NAME)
            .ok_or_else(|| LoadError::Shape {
                origin: origin.to_owned(),
                message: format!("exports no function named {EXPORT_NAME}"),
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate {
                origin: origin.to_owned(),
                message: format!("{e:#}"),
            })?;
        let handler = Handler {
            name: name.to_owned(),
            digest: digest(bytes),
            shape,
            options_json: manifest.options.to_string(),
            allowed_directives: manifest.directives.clone().into(),
            manifest,
            limits,
            pre,
            export,
        };
        // Instantiate once now, under the handler's limits, so that a module
        // whose export has the right arity but the wrong types, or that cannot
        // start within its limits, is refused here rather than on every
        // delivery.
        self.smoke_test(&handler)
            .map_err(|message| LoadError::Instantiate {
                origin: origin.to_owned(),
                message,
            })?;
        Ok(handler)
    }
}

fn detect_shape(component: &Component, engine: &wasmtime::Engine) -> Result<Shape, String> {
    let export = component
        .component_type()
        .exports(engine)
        .find(|(name, _)| *name == EXPORT_NAME)
        .map(|(_, item)| item.ty);
    let Some(ComponentItem::ComponentFunc(func)) = export else {
        return Err(format!(
            "exports no function named {EXPORT_NAME}; build it with the sighost SDK's #[handler]"
        ));
    };
    match func.params().len() {
        3 => Ok(Shape::SignalTenantContext),
        2 => Ok(Shape::SignalContext),
        1 => Ok(Shape::Signal),
        n => Err(format!(
            "{EXPORT_NAME} takes {n} parameters; a handler takes (signal, tenant, context), \
             (signal, context) or (signal)"
        )),
    }
}
