//! Task types: an open set, configured per type.
//!
//! Every task names a type. The built-ins ([`Builtin`]) are registered as
//! ordinary types of the same name; users add their own from the config file
//! (`[task_types.NAME]`) or `--task-type NAME=http:URL`. A type says which
//! handler runs it and how: per-attempt timeout, attempts, backoff, queue,
//! priority, a JSON Schema for its input, and whether results are cached.
//!
//! API nodes validate submissions against the registry, so nothing is queued
//! that its type would refuse; workers claim only the types they have a
//! handler for.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::input_schema::InputSchema;
use crate::secrets::{OpenError, Sealer};
use crate::{Builtin, InputError, RetryPolicy};

/// The longest type name.
pub const MAX_TYPE_NAME_BYTES: usize = 64;
/// The longest queue name.
pub const MAX_QUEUE_NAME_BYTES: usize = 64;
/// Per-attempt time limit when a type does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest per-attempt time limit a type may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Most bytes of an HTTP answer kept as a result, unless the type says.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Most bytes a command may write to stdout, unless the type says.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// How long a command gets between SIGTERM and SIGKILL, unless the type says.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// A task's type name: 1 to 64 of `A-Za-z0-9_.:-`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, example = "md5")]
pub struct TaskType(String);

impl TaskType {
    /// A type name, if `name` is a valid one (whether or not it is registered).
    pub fn new(name: &str) -> Result<TaskType, InputError> {
        if is_name(name, MAX_TYPE_NAME_BYTES) {
            Ok(TaskType(name.to_owned()))
        } else {
            Err(InputError::Invalid(format!(
                "a task type is 1 to {MAX_TYPE_NAME_BYTES} of A-Z a-z 0-9 _ . : -"
            )))
        }
    }

    /// A name read back from the store, trusted as written.
    pub fn from_stored(name: String) -> TaskType {
        TaskType(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Builtin> for TaskType {
    fn from(b: Builtin) -> Self {
        TaskType(b.as_str().to_owned())
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets the registry be looked up by `&str` (the derived order and equality
/// are the inner string's, as `Borrow` requires).
impl std::borrow::Borrow<str> for TaskType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TaskType {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// Where a successful result is also cached: the type decides (its cache
/// policy), the store writes it with the result.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheWrite {
    pub key: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Which code runs a type's attempts.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerSpec {
    /// Compiled into weir.
    Builtin(Builtin),
    /// POST the input to a URL (webhook delivery).
    Http(HttpSpec),
    /// Run a program once per attempt, input on stdin.
    Command(CommandSpec),
    /// Pulled over HTTP by workers in any language (`POST /workers/{id}/claim`).
    External,
    /// Run by a worker binary built on the `weir-worker` library that
    /// registered a Rust handler under the type's name.
    Rust,
}

impl HandlerSpec {
    /// The handler's name as configured.
    pub fn name(&self) -> &'static str {
        match self {
            HandlerSpec::Builtin(b) => b.as_str(),
            HandlerSpec::Http(_) => "http",
            HandlerSpec::Command(_) => "command",
            HandlerSpec::External => "external",
            HandlerSpec::Rust => "rust",
        }
    }

    /// Whether `weir worker` itself runs this handler (the others are run by
    /// external workers or custom worker binaries).
    pub fn runs_in_weir(&self) -> bool {
        !matches!(self, HandlerSpec::External | HandlerSpec::Rust)
    }
}

/// `handler = "http"`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSpec {
    pub url: String,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// HMAC-SHA256 key for `Weir-Signature`; none: unsigned.
    pub secret: Option<String>,
    /// Extra root certificates (PEM) for `https://` targets.
    pub ca_file: Option<PathBuf>,
    /// Most deliveries of this type in flight per worker process.
    pub max_in_flight: Option<usize>,
    /// Most bytes of an answer kept.
    pub max_response_bytes: usize,
}

/// `handler = "command"`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandSpec {
    /// The program and its arguments; no shell unless the user names one.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL when an attempt is stopped.
    pub kill_grace: Duration,
    /// Most bytes of stdout taken as the result.
    pub max_output_bytes: usize,
}

/// One registered type.
#[derive(Clone, Debug)]
pub struct TaskTypeSpec {
    pub name: TaskType,
    pub handler: HandlerSpec,
    /// Per-attempt time limit; a submission may lower it.
    pub timeout: Duration,
    /// Attempts unless the submission says (else the node's default).
    pub max_attempts: Option<i32>,
    /// Backoff between attempts unless the submission says (else the workers').
    pub retry_backoff: Option<RetryPolicy>,
    /// Queue unless the submission says.
    pub queue: Option<String>,
    /// Priority unless the submission says.
    pub priority: Option<i32>,
    /// JSON Schema every input must match.
    pub input_schema: Option<Value>,
    /// Results cached, and live duplicates folded, by input.
    pub cache: bool,
    /// Top-level input fields sealed before the task is stored and shown
    /// redacted (see [`crate::secrets`]).
    pub sensitive: Vec<String>,
}

impl TaskTypeSpec {
    /// A type with `handler` and every other setting at its default.
    pub fn new(name: TaskType, handler: HandlerSpec) -> Self {
        let cache = matches!(handler, HandlerSpec::Builtin(b) if b.is_cacheable());
        let sensitive = match handler {
            HandlerSpec::Builtin(b) => b.sensitive_fields().iter().map(|f| f.to_string()).collect(),
            _ => Vec::new(),
        };
        TaskTypeSpec {
            name,
            handler,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: None,
            retry_backoff: None,
            queue: None,
            priority: None,
            input_schema: None,
            cache,
            sensitive,
        }
    }
}

/// A registered type with its schema compiled.
#[derive(Clone)]
pub struct RegisteredType {
    pub spec: TaskTypeSpec,
    schema: Option<Arc<InputSchema>>,
}

impl fmt::Debug for RegisteredType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredType")
            .field("spec", &self.spec)
            .finish()
    }
}

impl RegisteredType {
    /// Checks `input` against the built-in's rules and the type's schema.
    pub fn validate_input(&self, input: &Value) -> Result<(), InputError> {
        if let HandlerSpec::Builtin(b) = self.spec.handler {
            b.validate_input(input)?;
        }
        if let Some(schema) = &self.schema {
            if let Err(m) = schema.check(input) {
                return Err(InputError::Invalid(format!(
                    "input does not match the schema of {} at {}: {}",
                    self.spec.name, m.at, m.message
                )));
            }
        }
        Ok(())
    }

    /// The shared-cache key for `input`, for types whose results are cached:
    /// the type and a SHA-256 of the input (serde_json writes object keys in
    /// order, so equal inputs give equal keys).
    pub fn cache_key(&self, input: &Value) -> Option<String> {
        if !self.spec.cache {
            return None;
        }
        let digest = match self.spec.handler {
            HandlerSpec::Builtin(b) if b.is_cacheable() => b.cache_digest(input)?,
            _ => hex::encode(Sha256::digest(input.to_string())),
        };
        Some(format!("{}:{digest}", self.spec.name))
    }

    /// What `GET /task-types` shows: no secrets, header values or env.
    pub fn public_view(&self) -> TaskTypeView {
        let s = &self.spec;
        let (url, headers, signed, command) = match &s.handler {
            HandlerSpec::Http(h) => (
                Some(redact_url(&h.url)),
                h.headers.keys().cloned().collect(),
                h.secret.is_some(),
                None,
            ),
            HandlerSpec::Command(c) => (None, Vec::new(), false, Some(c.argv.clone())),
            _ => (None, Vec::new(), false, None),
        };
        TaskTypeView {
            name: s.name.clone(),
            handler: s.handler.name(),
            timeout_ms: s.timeout.as_millis() as u64,
            max_attempts: s.max_attempts,
            retry_backoff: s.retry_backoff,
            queue: s.queue.clone(),
            priority: s.priority,
            input_schema: s.input_schema.clone(),
            cache: s.cache,
            sensitive: s.sensitive.clone(),
            url,
            header_names: headers,
            signed,
            command,
        }
    }
}

/// A URL with any user info and query string taken out.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{host}/{path}")
        }
        None => rest.rsplit('@').next().unwrap_or(rest).to_owned(),
    };
    format!("{scheme}://{rest}")
}

/// One type as `GET /task-types` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TaskTypeView {
    pub name: TaskType,
    /// `http`, `command`, `external`, `rust`, or a built-in's name.
    pub handler: &'static str,
    pub timeout_ms: u64,
    pub max_attempts: Option<i32>,
    #[schema(value_type = Option<crate::retry::RetryPolicyJson>)]
    pub retry_backoff: Option<RetryPolicy>,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    pub cache: bool,
    /// Input fields sealed at rest and redacted when shown.
    pub sensitive: Vec<String>,
    /// HTTP handler: the target, without credentials or query.
    pub url: Option<String>,
    /// HTTP handler: the extra headers' names (values are not shown).
    pub header_names: Vec<String>,
    /// HTTP handler: whether deliveries carry `Weir-Signature`.
    pub signed: bool,
    /// Command handler: the program and its arguments.
    pub command: Option<Vec<String>>,
}

/// A registry entry that cannot be used; the message names the key.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{key}: {message}")]
pub struct TaskTypeError {
    pub key: String,
    pub message: String,
}

impl TaskTypeError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        TaskTypeError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A cache or idempotency key in a tenant's own namespace (`None`: the
/// shared one), so the same input or key from another tenant never meets it.
pub fn tenant_scoped(tenant: Option<&str>, key: String) -> String {
    match tenant {
        Some(t) => format!("{t}/{key}"),
        None => key,
    }
}

/// What a task queued from outside weir (SQL's `weir_enqueue`) takes from
/// its type: each API node and worker publishes its types' to the store.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskTypeDefaults {
    pub name: String,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    /// The type's, else the publishing node's default.
    pub max_attempts: i32,
    /// The per-attempt time limit, which a submission may only lower.
    pub timeout: Duration,
    /// Input fields the API seals with its key: such a type is submitted
    /// through the API only.
    pub sealed_fields: Vec<String>,
}

/// Every type this process knows, by name.
#[derive(Clone, Debug)]
pub struct TaskTypes {
    types: BTreeMap<TaskType, RegisteredType>,
    /// Seals and opens the types' sensitive fields.
    sealer: Sealer,
}

impl Default for TaskTypes {
    /// The built-ins alone.
    fn default() -> Self {
        let mut t = TaskTypes {
            types: BTreeMap::new(),
            sealer: Sealer::default(),
        };
        for b in Builtin::ALL {
            let spec = TaskTypeSpec::new(b.into(), HandlerSpec::Builtin(b));
            t.types
                .insert(spec.name.clone(), RegisteredType { spec, schema: None });
        }
        t
    }
}

impl TaskTypes {
    /// Registers (or replaces) a type; its schema must compile.
    pub fn insert(&mut self, spec: TaskTypeSpec) -> Result<(), TaskTypeError> {
        let key = format!("task_types.{}", spec.name);
        let schema = match &spec.input_schema {
            Some(s) => Some(Arc::new(InputSchema::compile(s).map_err(|e| {
                TaskTypeError::new(
                    format!("{key}.input_schema"),
                    format!("not a valid JSON Schema: {e}"),
                )
            })?)),
            None => None,
        };
        self.types
            .insert(spec.name.clone(), RegisteredType { spec, schema });
        Ok(())
    }

    /// The type named `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&RegisteredType, InputError> {
        self.types.get(name).ok_or_else(|| InputError::UnknownKind {
            name: name.chars().take(MAX_TYPE_NAME_BYTES).collect(),
            known: self
                .types
                .keys()
                .map(TaskType::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Seals sensitive fields with `sealer` from now on.
    pub fn with_sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = sealer;
        self
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Seals `kind`'s sensitive fields of `input`, before it is stored.
    pub fn seal_input(&self, kind: &RegisteredType, input: &mut Value) {
        if !kind.spec.sensitive.is_empty() {
            self.sealer.seal_fields(input, &kind.spec.sensitive);
        }
    }

    /// Opens a stored input's sealed fields, for an attempt.
    pub fn open_input(&self, input: &mut Value) -> Result<(), OpenError> {
        self.sealer.open(input)
    }

    /// Every type, by name.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredType> {
        self.types.values()
    }

    /// Every type's defaults, `max_attempts` where a type sets none.
    pub fn defaults(&self, max_attempts: i32) -> Vec<TaskTypeDefaults> {
        self.iter()
            .map(|t| TaskTypeDefaults {
                name: t.spec.name.as_str().to_string(),
                queue: t.spec.queue.clone(),
                priority: t.spec.priority,
                max_attempts: t.spec.max_attempts.unwrap_or(max_attempts),
                timeout: t.spec.timeout,
                sealed_fields: t.spec.sensitive.clone(),
            })
            .collect()
    }

    /// An attempt's time limit: the type's (the default for a type this
    /// registry does not know), or the task's own when lower.
    pub fn attempt_timeout(&self, kind: &TaskType, own: Option<Duration>) -> Duration {
        let of_type = self
            .types
            .get(kind.as_str())
            .map_or(DEFAULT_TIMEOUT, |t| t.spec.timeout);
        own.map_or(of_type, |t| t.min(of_type))
    }

    /// The backoff after a failed attempt: the task's own, else its type's,
    /// else `default`.
    pub fn retry_policy(
        &self,
        kind: &TaskType,
        own: Option<RetryPolicy>,
        default: RetryPolicy,
    ) -> RetryPolicy {
        own.or_else(|| self.types.get(kind.as_str())?.spec.retry_backoff)
            .unwrap_or(default)
    }

    /// Where a successful result of `kind` with `input` is cached (until
    /// `now + ttl`), if its type caches.
    pub fn cache_write(
        &self,
        kind: &TaskType,
        input: &Value,
        tenant: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
    ) -> Option<CacheWrite> {
        let key = tenant_scoped(tenant, self.get(kind.as_str()).ok()?.cache_key(input)?);
        Some(CacheWrite {
            key,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        })
    }

    /// Sets a registered type's backoff (`--retry-backoff-for`).
    pub fn set_retry_backoff(
        &mut self,
        name: &str,
        policy: RetryPolicy,
    ) -> Result<(), TaskTypeError> {
        let known = self.get(name).map(|t| t.spec.name.clone());
        let name = known.map_err(|e| TaskTypeError::new("retry-backoff-for", e.to_string()))?;
        if let Some(t) = self.types.get_mut(&name) {
            t.spec.retry_backoff = Some(policy);
        }
        Ok(())
    }
}

/// A `[task_types.NAME]` table as written in the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTypeConfig {
    pub handler: String,
    pub timeout: Option<String>,
    pub max_attempts: Option<i32>,
    pub retry_backoff: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    /// A JSON Schema, as a table or as a JSON string.
    pub input_schema: Option<Value>,
    pub cache: Option<bool>,
    /// Top-level input fields to seal at rest and redact when shown.
    pub sensitive: Option<Vec<String>>,
    // http
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub secret: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub max_in_flight: Option<usize>,
    pub max_response_bytes: Option<usize>,
    // command
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub cwd: Option<PathBuf>,
    pub kill_grace: Option<String>,
    pub max_output_bytes: Option<usize>,
}

impl TaskTypeConfig {
    /// Checks the table and builds the type; errors name the failing key.
    pub fn into_spec(self, name: &str) -> Result<TaskTypeSpec, TaskTypeError> {
        let key = format!("task_types.{name}");
        let at = |field: &str| format!("{key}.{field}");
        let type_name =
            TaskType::new(name).map_err(|e| TaskTypeError::new(key.clone(), e.to_string()))?;
        let handler = self.handler(&key)?;
        let mut spec = TaskTypeSpec::new(type_name, handler);
        if let Some(t) = &self.timeout {
            spec.timeout = parse_duration(t)
                .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
                .ok_or_else(|| {
                    TaskTypeError::new(
                        at("timeout"),
                        format!("{t:?} is not a duration from 1ms to 24h"),
                    )
                })?;
        }
        if let Some(n) = self.max_attempts {
            if !(1..=100).contains(&n) {
                return Err(TaskTypeError::new(
                    at("max_attempts"),
                    "must be from 1 to 100",
                ));
            }
            spec.max_attempts = Some(n);
        }
        if let Some(b) = &self.retry_backoff {
            spec.retry_backoff =
                Some(parse_backoff(b).map_err(|m| TaskTypeError::new(at("retry_backoff"), m))?);
        }
        if let Some(q) = &self.queue {
            if !valid_queue_name(q) {
                return Err(TaskTypeError::new(
                    at("queue"),
                    "a queue name is 1 to 64 of A-Z a-z 0-9 _ . : -",
                ));
            }
            spec.queue = Some(q.clone());
        }
        spec.priority = self.priority;
        spec.input_schema =
            match self.input_schema {
                Some(Value::String(s)) => Some(serde_json::from_str(&s).map_err(|e| {
                    TaskTypeError::new(at("input_schema"), format!("not JSON: {e}"))
                })?),
                other => other,
            };
        if let Some(c) = self.cache {
            spec.cache = c;
        }
        if let Some(fields) = self.sensitive {
            if let Some(bad) = fields.iter().find(|f| f.is_empty() || f.len() > 128) {
                return Err(TaskTypeError::new(
                    at("sensitive"),
                    format!("{bad:?} is not a field name (1 to 128 bytes)"),
                ));
            }
            spec.sensitive = fields;
        }
        // A sealed input differs every time it is sealed: neither cached
        // results nor folded duplicates could find it, and a cache keyed by
        // a secret would keep it.
        if spec.cache && !spec.sensitive.is_empty() {
            return Err(TaskTypeError::new(
                at("cache"),
                "a type with sensitive fields cannot cache its results",
            ));
        }
        Ok(spec)
    }

    fn handler(&self, key: &str) -> Result<HandlerSpec, TaskTypeError> {
        let at = |field: &str| format!("{key}.{field}");
        let has_http = self.url.is_some()
            || self.headers.is_some()
            || self.secret.is_some()
            || self.ca_file.is_some()
            || self.max_in_flight.is_some()
            || self.max_response_bytes.is_some();
        let has_command = self.command.is_some()
            || self.env.is_some()
            || self.cwd.is_some()
            || self.kill_grace.is_some()
            || self.max_output_bytes.is_some();
        let handler = match self.handler.as_str() {
            "http" => {
                let url = self
                    .url
                    .clone()
                    .ok_or_else(|| TaskTypeError::new(at("url"), "the http handler needs a url"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(TaskTypeError::new(
                        at("url"),
                        format!("{url:?} is not an http:// or https:// URL"),
                    ));
                }
                if self.max_in_flight == Some(0) {
                    return Err(TaskTypeError::new(
                        at("max_in_flight"),
                        "must be at least 1",
                    ));
                }
                HandlerSpec::Http(HttpSpec {
                    url,
                    headers: self.headers.clone().unwrap_or_default(),
                    secret: self.secret.clone().filter(|s| !s.is_empty()),
                    ca_file: self.ca_file.clone(),
                    max_in_flight: self.max_in_flight,
                    max_response_bytes: self
                        .max_response_bytes
                        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
                })
            }
            "command" => {
                let argv = self.command.clone().unwrap_or_default();
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(TaskTypeError::new(
                        at("command"),
                        "the command handler needs command = [\"program\", \"arg\", …]",
                    ));
                }
                let kill_grace = match &self.kill_grace {
                    Some(g) => parse_duration(g).ok_or_else(|| {
                        TaskTypeError::new(at("kill_grace"), format!("{g:?} is not a duration"))
                    })?,
                    None => DEFAULT_KILL_GRACE,
                };
                HandlerSpec::Command(CommandSpec {
                    argv,
                    env: self.env.clone().unwrap_or_default(),
                    cwd: self.cwd.clone(),
                    kill_grace,
                    max_output_bytes: self.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
                })
            }
            "external" => HandlerSpec::External,
            "rust" => HandlerSpec::Rust,
            other => HandlerSpec::Builtin(Builtin::from_name(other).ok_or_else(|| {
                TaskTypeError::new(
                    at("handler"),
                    format!(
                        "unknown handler {other:?}; one of http, command, external, rust, {}",
                        Builtin::ALL.map(Builtin::as_str).join(", ")
                    ),
                )
            })?),
        };
        let misplaced = match handler {
            HandlerSpec::Http(_) => has_command.then_some("command settings"),
            HandlerSpec::Command(_) => has_http.then_some("http settings"),
            _ => (has_http || has_command).then_some("http or command settings"),
        };
        if let Some(what) = misplaced {
            return Err(TaskTypeError::new(
                at("handler"),
                format!("{what} do not apply to handler {:?}", self.handler),
            ));
        }
        Ok(handler)
    }

    /// `NAME=http:URL`, `NAME=command:PROGRAM ARG…`, `NAME=external`,
    /// `NAME=rust` or `NAME=<built-in>`: the one-line form of `--task-type`.
    pub fn parse_flag(s: &str) -> Result<TaskTypeSpec, TaskTypeError> {
        let key = "task-type";
        let (name, handler) = s.split_once('=').ok_or_else(|| {
            TaskTypeError::new(
                key,
                format!("expected NAME=http:URL or NAME=command:PROGRAM, got {s:?}"),
            )
        })?;
        let (handler, arg) = match handler.split_once(':') {
            Some((h, a)) if h == "http" || h == "command" => (h, Some(a)),
            _ => (handler, None),
        };
        let mut c = TaskTypeConfig {
            handler: handler.trim().to_owned(),
            ..Default::default()
        };
        match (c.handler.as_str(), arg) {
            ("http", Some(url)) => c.url = Some(url.trim().to_owned()),
            ("command", Some(cmd)) => {
                c.command = Some(cmd.split_whitespace().map(str::to_owned).collect())
            }
            _ => {}
        }
        c.into_spec(name.trim())
            .map_err(|e| TaskTypeError::new(key, format!("{s:?}: {}", e.message)))
    }
}

/// A queue name: 1 to 64 of `A-Za-z0-9_.:-`.
pub fn valid_queue_name(q: &str) -> bool {
    is_name(q, MAX_QUEUE_NAME_BYTES)
}

/// 1 to `max` bytes of `A-Za-z0-9_.:-`: the names of types and queues.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// `BASE:CAP`, e.g. `100ms:30s`.
pub fn parse_backoff(s: &str) -> Result<RetryPolicy, String> {
    let (base, cap) = s
        .split_once(':')
        .ok_or_else(|| format!("expected BASE:CAP like 1s:5m, got {s:?}"))?;
    let base = parse_duration(base).ok_or_else(|| format!("{base:?} is not a duration"))?;
    let cap = parse_duration(cap).ok_or_else(|| format!("{cap:?} is not a duration"))?;
    if base.is_zero() || cap < base {
        return Err(format!(
            "backoff {s:?}: the base must be above zero and the cap at least the base"
        ));
    }
    Ok(RetryPolicy { base, cap })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(toml_like: Value) -> TaskTypeConfig {
        serde_json::from_value(toml_like).unwrap()
    }

    #[test]
    fn builtins_are_ordinary_types() {
        let types = TaskTypes::default();
        let md5 = types.get("md5").unwrap();
        assert!(md5.spec.cache);
        assert_eq!(md5.spec.timeout, DEFAULT_TIMEOUT);
        assert!(md5.validate_input(&json!({"string": "x"})).is_ok());
        assert!(md5.validate_input(&json!({})).is_err());
        assert_eq!(
            md5.cache_key(&json!({"string": "x"})).unwrap(),
            format!("md5:{}", hex::encode(Sha256::digest("x")))
        );
        assert_eq!(
            types
                .get("argon2")
                .unwrap()
                .cache_key(&json!({"string": "x"})),
            None
        );
    }

    #[test]
    fn unknown_types_list_the_known_ones() {
        let err = TaskTypes::default().get("resize_image").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"resize_image\""), "{msg}");
        assert!(msg.contains("md5") && msg.contains("noop"), "{msg}");
    }

    #[test]
    fn a_schema_names_the_failing_path() {
        let mut types = TaskTypes::default();
        let spec = config(json!({
            "handler": "external",
            "input_schema": {"type": "object", "required": ["width"],
                             "properties": {"width": {"type": "integer", "minimum": 1}}}
        }))
        .into_spec("resize")
        .unwrap();
        types.insert(spec).unwrap();
        let t = types.get("resize").unwrap();
        assert!(t.validate_input(&json!({"width": 10})).is_ok());
        let e = t
            .validate_input(&json!({"width": 0}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/width"), "{e}");
        let e = t.validate_input(&json!({})).unwrap_err().to_string();
        assert!(e.contains("width"), "{e}");
    }

    #[test]
    fn timeouts_and_backoffs_resolve_task_then_type_then_default() {
        let mut types = TaskTypes::default();
        let spec =
            config(json!({"handler": "external", "timeout": "10s", "retry_backoff": "1s:2s"}))
                .into_spec("slow")
                .unwrap();
        types.insert(spec).unwrap();
        let slow = TaskType::new("slow").unwrap();
        let unknown = TaskType::new("elsewhere").unwrap();
        let secs = Duration::from_secs;
        assert_eq!(types.attempt_timeout(&slow, None), secs(10));
        assert_eq!(types.attempt_timeout(&slow, Some(secs(3))), secs(3));
        assert_eq!(
            types.attempt_timeout(&slow, Some(secs(30))),
            secs(10),
            "never raised"
        );
        assert_eq!(types.attempt_timeout(&unknown, None), DEFAULT_TIMEOUT);
        let own = RetryPolicy {
            base: secs(5),
            cap: secs(9),
        };
        let default = RetryPolicy::default();
        assert_eq!(types.retry_policy(&slow, Some(own), default), own);
        assert_eq!(types.retry_policy(&slow, None, default).cap, secs(2));
        assert_eq!(types.retry_policy(&unknown, None, default), default);
    }

    #[test]
    fn bad_tables_name_their_key() {
        let err = |v: Value| config(v).into_spec("deliver").unwrap_err().key;
        assert_eq!(err(json!({"handler": "http"})), "task_types.deliver.url");
        assert_eq!(
            err(json!({"handler": "http", "url": "ftp://x"})),
            "task_types.deliver.url"
        );
        assert_eq!(
            err(json!({"handler": "carrier-pigeon"})),
            "task_types.deliver.handler"
        );
        assert_eq!(
            err(json!({"handler": "external", "timeout": "soon"})),
            "task_types.deliver.timeout"
        );
        assert_eq!(
            err(json!({"handler": "command", "command": []})),
            "task_types.deliver.command"
        );
        assert_eq!(
            err(json!({"handler": "external", "url": "http://x"})),
            "task_types.deliver.handler"
        );
        assert_eq!(
            err(json!({"handler": "noop", "max_attempts": 0})),
            "task_types.deliver.max_attempts"
        );
        let mut types = TaskTypes::default();
        let bad_schema = config(json!({"handler": "external", "input_schema": {"type": 7}}))
            .into_spec("x")
            .unwrap();
        assert_eq!(
            types.insert(bad_schema).unwrap_err().key,
            "task_types.x.input_schema"
        );
    }

    #[test]
    fn sensitive_fields_are_sealed_shown_redacted_and_cannot_cache() {
        let err = config(json!({"handler": "external", "sensitive": ["pw"], "cache": true}))
            .into_spec("login")
            .unwrap_err();
        assert_eq!(err.key, "task_types.login.cache");
        let spec = config(json!({"handler": "external", "sensitive": ["pw"]}))
            .into_spec("login")
            .unwrap();
        let mut types = TaskTypes::default();
        types.insert(spec).unwrap();
        let login = types.get("login").unwrap();
        assert_eq!(login.public_view().sensitive, vec!["pw".to_string()]);
        let mut input = json!({"pw": "hunter2", "user": "ann"});
        types.seal_input(login, &mut input);
        assert!(!input.to_string().contains("hunter2"), "{input}");
        assert_eq!(input["user"], "ann");
        types.open_input(&mut input).unwrap();
        assert_eq!(input, json!({"pw": "hunter2", "user": "ann"}));
        let argon2 = types.get("argon2").unwrap();
        assert_eq!(argon2.spec.sensitive, vec!["string".to_string()]);
    }

    #[test]
    fn flags_give_one_line_types() {
        let s = TaskTypeConfig::parse_flag("deliver=http:http://127.0.0.1:9/hook").unwrap();
        assert!(
            matches!(s.handler, HandlerSpec::Http(ref h) if h.url == "http://127.0.0.1:9/hook")
        );
        let s = TaskTypeConfig::parse_flag("thumb=command:python3 thumb.py --small").unwrap();
        assert!(
            matches!(s.handler, HandlerSpec::Command(ref c) if c.argv == ["python3", "thumb.py", "--small"])
        );
        assert!(matches!(
            TaskTypeConfig::parse_flag("py=external").unwrap().handler,
            HandlerSpec::External
        ));
        assert!(TaskTypeConfig::parse_flag("nothing").is_err());
        assert!(TaskTypeConfig::parse_flag("bad name=external").is_err());
    }

    #[test]
    fn the_public_view_keeps_secrets_out() {
        let spec = config(json!({
            "handler": "http", "url": "https://user:pw@hooks.example/in?token=abc",
            "secret": "s3cret", "headers": {"Authorization": "Bearer xyz"}
        }))
        .into_spec("deliver")
        .unwrap();
        let mut types = TaskTypes::default();
        types.insert(spec).unwrap();
        let view = serde_json::to_string(&types.get("deliver").unwrap().public_view()).unwrap();
        for secret in ["s3cret", "xyz", "pw", "token=abc"] {
            assert!(!view.contains(secret), "{secret} in {view}");
        }
        assert!(view.contains("https://hooks.example/in"), "{view}");
        assert!(view.contains("\"signed\":true"), "{view}");
    }

    #[test]
    fn user_types_cache_by_their_whole_input() {
        let spec = config(json!({"handler": "external", "cache": true}))
            .into_spec("render")
            .unwrap();
        let mut types = TaskTypes::default();
        types.insert(spec).unwrap();
        let t = types.get("render").unwrap();
        let a = t.cache_key(&json!({"a": 1, "b": 2})).unwrap();
        assert!(a.starts_with("render:"));
        assert_eq!(Some(a.clone()), t.cache_key(&json!({"b": 2, "a": 1})));
        assert_ne!(Some(a), t.cache_key(&json!({"a": 1, "b": 3})));
    }
}
