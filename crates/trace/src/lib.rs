//! Distributed traces across weir's hops.
//!
//! A request's trace runs lb → API node → the task it queued → each attempt
//! of a worker → the attempt's HTTP delivery or command (and across a
//! workflow's steps). Each hop continues the W3C trace context it is given
//! (`traceparent`/`tracestate`, [`TraceContext`]) or, where none comes,
//! starts a trace, sampled at `--trace-sample-ratio` (a sampled parent's
//! children are sampled, an unsampled one's are not).
//!
//! A span's ids are chosen when it starts, because a hop sends them on (a
//! header, a stored task) before it ends; the span is built whole when it
//! ends and handed to the OpenTelemetry SDK's batch processor, which exports
//! it by OTLP/HTTP (protobuf) in the background. An unsampled span costs two
//! random ids and is never built.
//!
//! Without `--otlp-endpoint` weir records nothing and each hop passes the
//! context it was given on unchanged: a child id would name a span no one
//! exports, and break the caller's trace.
//!
//! # Layout
//! - [`context`]: the W3C headers, read and written.
//! - [`export`]: the OTLP/HTTP exporter and its HTTP client.

mod context;
mod export;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
pub use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};

pub use context::TraceContext;
use export::Export;

/// A setting that cannot work, named for the line that stops the process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--otlp-endpoint: {0}")]
    Endpoint(String),
    #[error("--trace-sample-ratio: {0} is not between 0 and 1")]
    SampleRatio(f64),
}

/// How a process traces.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The OTLP/HTTP collector (`http://collector:4318`; `/v1/traces` is
    /// added unless the path already names it). None: nothing is recorded.
    pub endpoint: Option<String>,
    /// The share of new traces sampled, 0 to 1.
    pub sample_ratio: f64,
    /// `service.name` on every span.
    pub service: String,
}

/// Starts spans and exports the sampled ones. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Tracer {
    export: Option<Arc<Export>>,
    /// A new trace is sampled when its id's low 64 bits fall below this.
    sample_below: u64,
    /// Every new trace is sampled (ratio 1).
    sample_all: bool,
}

impl Tracer {
    /// A tracer that records nothing and passes contexts on unchanged.
    pub fn disabled() -> Tracer {
        Tracer::default()
    }

    /// A tracer for `settings`; exporting needs a Tokio runtime (the
    /// exporter's requests run on the current one).
    pub fn new(settings: &Settings) -> Result<Tracer, Error> {
        let ratio = settings.sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::SampleRatio(ratio));
        }
        let Some(endpoint) = &settings.endpoint else {
            return Ok(Tracer::disabled());
        };
        let export = Export::new(endpoint, &settings.service)?;
        Ok(Tracer {
            export: Some(Arc::new(export)),
            sample_below: (ratio * u64::MAX as f64) as u64,
            sample_all: ratio >= 1.0,
        })
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Starts a span continuing `parent` (a request's or a task's context),
    /// or a new trace without one. None when there is nothing to carry: no
    /// parent, and no exporter to start a trace for.
    pub fn start(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&TraceContext>,
    ) -> Option<Span> {
        let Some(export) = &self.export else {
            return parent.map(|p| Span::passing_on(p.clone()));
        };
        let (trace_id, sampled, tracestate, parent_id) = match parent {
            Some(p) => (p.trace_id, p.sampled, p.tracestate.clone(), Some(p.span_id)),
            None => {
                let trace_id = new_id::<16>();
                let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
                let sampled = self.sample_all || low < self.sample_below;
                (trace_id, sampled, None, None)
            }
        };
        Some(Span {
            context: TraceContext {
                trace_id,
                span_id: new_id::<8>(),
                sampled,
                tracestate,
            },
            parent: parent_id,
            parent_is_remote: parent.is_some(),
            mode: match sampled {
                true => Mode::Recorded(Recorded::new(export.clone(), name, kind)),
                false => Mode::Unsampled,
            },
        })
    }

    /// Exports what is queued and stops the exporter; blocks (call it from
    /// a blocking thread) for at most a few seconds.
    pub fn shutdown(&self) {
        if let Some(export) = &self.export {
            export.shutdown();
        }
    }
}

/// The process's tracer (disabled until [`install`]).
pub fn tracer() -> &'static Tracer {
    GLOBAL.get_or_init(Tracer::disabled)
}

/// Makes `tracer` the process's; false when one was installed already.
pub fn install(tracer: Tracer) -> bool {
    GLOBAL.set(tracer).is_ok()
}

static GLOBAL: OnceLock<Tracer> = OnceLock::new();

/// Records a task's wait in its queue, from `since` (when it became due)
/// until now, under the context it was queued with.
pub fn queue_wait(parent: &TraceContext, since: SystemTime) {
    if let Some(span) = tracer().start("task.queue_wait", SpanKind::Internal, Some(parent)) {
        span.started_at(since).end();
    }
}

/// One hop's span. Its context is what the hop sends on; it is exported
/// when [`Span::end`] is called, if its trace is sampled and weir exports.
#[derive(Debug)]
pub struct Span {
    context: TraceContext,
    parent: Option<[u8; 8]>,
    parent_is_remote: bool,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Not exporting: the parent's context goes on unchanged.
    PassingOn,
    /// Exporting, this trace not sampled: ids, nothing recorded.
    Unsampled,
    Recorded(Recorded),
}

/// What a sampled span collects until it ends.
#[derive(Debug)]
struct Recorded {
    export: Arc<Export>,
    name: &'static str,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

impl Recorded {
    fn new(export: Arc<Export>, name: &'static str, kind: SpanKind) -> Recorded {
        Recorded {
            export,
            name,
            kind,
            start: SystemTime::now(),
            attributes: Vec::new(),
            error: None,
        }
    }
}

impl Span {
    /// A hop that records nothing and sends its parent's context on.
    fn passing_on(context: TraceContext) -> Span {
        Span {
            context,
            parent: None,
            parent_is_remote: false,
            mode: Mode::PassingOn,
        }
    }

    /// The context the hop sends on: its children's parent.
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// Whether this span will be exported.
    pub fn is_recording(&self) -> bool {
        matches!(self.mode, Mode::Recorded(_))
    }

    /// A span within this one (in the same process).
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Span {
        let mode = match &self.mode {
            Mode::PassingOn => return Span::passing_on(self.context.clone()),
            Mode::Unsampled => Mode::Unsampled,
            Mode::Recorded(r) => Mode::Recorded(Recorded::new(r.export.clone(), name, kind)),
        };
        Span {
            context: TraceContext {
                span_id: new_id::<8>(),
                ..self.context.clone()
            },
            parent: Some(self.context.span_id),
            parent_is_remote: false,
            mode,
        }
    }

    /// Moves the span's start back (a queue wait began when the task was
    /// queued, not when a worker took it).
    pub fn started_at(mut self, at: SystemTime) -> Span {
        if let Mode::Recorded(r) = &mut self.mode {
            r.start = at;
        }
        self
    }

    /// Adds an attribute (kept only when the span is recorded).
    pub fn set_attribute(&mut self, attribute: impl FnOnce() -> KeyValue) {
        if let Mode::Recorded(r) = &mut self.mode {
            r.attributes.push(attribute());
        }
    }

    /// Marks the span failed, with why.
    pub fn set_error(&mut self, message: impl Into<String>) {
        if let Mode::Recorded(r) = &mut self.mode {
            r.error = Some(message.into());
        }
    }

    /// Ends a request's span with its method, `target` (its path or
    /// route) and status; a 5xx marks it failed.
    pub fn end_answered(mut self, method: &str, target: KeyValue, status: u16) {
        self.set_attribute(|| KeyValue::new("http.request.method", method.to_owned()));
        self.set_attribute(|| target);
        self.set_attribute(|| KeyValue::new("http.response.status_code", i64::from(status)));
        if status >= 500 {
            self.set_error(format!("answered {status}"));
        }
        self.end();
    }

    /// Ends the span now.
    pub fn end(self) {
        self.end_at(SystemTime::now());
    }

    /// Ends the span at `at` and hands it to the exporter.
    pub fn end_at(self, at: SystemTime) {
        let Mode::Recorded(r) = self.mode else {
            return;
        };
        let flags = TraceFlags::SAMPLED;
        let state = self
            .context
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let data = SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(self.context.trace_id),
                SpanId::from_bytes(self.context.span_id),
                flags,
                false,
                state,
            ),
            parent_span_id: self.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: self.parent_is_remote,
            span_kind: r.kind,
            name: Cow::Borrowed(r.name),
            start_time: r.start,
            end_time: at.max(r.start),
            attributes: r.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match r.error {
                Some(message) => Status::error(message),
                None => Status::Unset,
            },
            instrumentation_scope: r.export.scope.clone(),
        };
        r.export.processor.on_end(data);
    }
}

/// A random non-zero id of `N` (at most 16) bytes: one draw per id, as
/// every request the lb forwards while exporting gets one.
fn new_id<const N: usize>() -> [u8; N] {
    loop {
        let bits = rand::random::<u128>().to_le_bytes();
        let id: [u8; N] = std::array::from_fn(|i| bits[i]);
        if id != [0; N] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> TraceContext {
        TraceContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled,
            tracestate: Some("vendor=x".into()),
        }
    }

    #[test]
    fn without_an_exporter_a_hop_passes_its_context_on() {
        let tracer = Tracer::disabled();
        assert!(tracer.start("hop", SpanKind::Server, None).is_none());
        let span = tracer
            .start("hop", SpanKind::Server, Some(&parent(true)))
            .unwrap();
        assert_eq!(span.context(), &parent(true));
        assert_eq!(
            span.child("inner", SpanKind::Client).context(),
            &parent(true)
        );
        assert!(!span.is_recording());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let settings = Settings {
                endpoint: None,
                sample_ratio: ratio,
                service: "weir".into(),
            };
            assert!(Tracer::new(&settings).is_err(), "{ratio}");
        }
    }
}
