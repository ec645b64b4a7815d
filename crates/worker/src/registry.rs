//! The registry a worker claims by: a handler per task type.
//!
//! A worker claims only the types it has a handler for, so a type served by
//! an external worker or a custom worker binary is never taken by a worker
//! that cannot run it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use weir_core::{HandlerSpec, TaskType, TaskTypes};

use crate::handler::Handler;
use crate::handlers::{BuiltinHandler, CommandHandler, HttpHandler};

/// A registry entry that could not be built (e.g. an unreadable `ca_file`).
#[derive(Debug, thiserror::Error)]
#[error("task_types.{name}: {message}")]
pub struct HandlerSetupError {
    pub name: String,
    pub message: String,
}

/// The handlers of one worker process, by type name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_type: BTreeMap<TaskType, Arc<dyn Handler>>,
    /// Types whose handler was registered in code (kept when the
    /// configured types change).
    registered: std::collections::BTreeSet<TaskType>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_type.keys()).finish()
    }
}

impl Handlers {
    /// A handler for every type of `types` that weir runs itself (built-in,
    /// `http`, `command`); `external` and `rust` types are left to others.
    pub fn from_types(types: &TaskTypes) -> Result<Handlers, HandlerSetupError> {
        let mut handlers = Handlers::default();
        for t in types.iter() {
            let spec = &t.spec;
            let setup_error = |message: String| HandlerSetupError {
                name: spec.name.to_string(),
                message,
            };
            let handler: Arc<dyn Handler> = match &spec.handler {
                HandlerSpec::Builtin(b) => Arc::new(BuiltinHandler(*b)),
                HandlerSpec::Http(h) => Arc::new(HttpHandler::new(h).map_err(setup_error)?),
                HandlerSpec::Command(c) => Arc::new(CommandHandler::new(c.clone())),
                HandlerSpec::External | HandlerSpec::Rust => continue,
            };
            handlers.by_type.insert(spec.name.clone(), handler);
        }
        Ok(handlers)
    }

    /// Adds (or replaces) the handler of type `name`.
    pub fn register(
        &mut self,
        name: &str,
        handler: impl Handler,
    ) -> Result<&mut Self, weir_core::InputError> {
        let name = TaskType::new(name)?;
        self.by_type.insert(name.clone(), Arc::new(handler));
        self.registered.insert(name);
        Ok(self)
    }

    /// Adds the handlers registered in code in `other`.
    pub fn extend_registered(&mut self, other: &Handlers) {
        for name in &other.registered {
            if let Some(handler) = other.by_type.get(name) {
                self.by_type.insert(name.clone(), handler.clone());
                self.registered.insert(name.clone());
            }
        }
    }

    pub fn get(&self, task_type: &TaskType) -> Option<Arc<dyn Handler>> {
        self.by_type.get(task_type).cloned()
    }

    /// The types these handlers run: what the worker claims.
    pub fn type_names(&self) -> Vec<String> {
        self.by_type.keys().map(|t| t.to_string()).collect()
    }
}
