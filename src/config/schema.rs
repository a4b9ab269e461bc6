//! What Switchyard accepts in a Linkerd 1 config, as data: the keys it
//! supports, and the keys and kinds Linkerd 1 has that it does not support
//! yet. The walk checks a document against these tables and reports every
//! problem with its line and column, so the typed deserialization that
//! follows only ever sees keys it knows.
//!
//! To support a new key, move it from an `unsupported` list into `fields`
//! (and add it to the typed model); to support a new kind, move it from
//! `unsupported` into `kinds`.

use super::Problem;
use super::node::{Key, Node, Pos, Value};

/// The type of a config value.
#[derive(Debug)]
pub(crate) enum Ty {
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// An integer within bounds (inclusive).
    Int { min: i128, max: i128 },
    /// A number (integer or decimal) within bounds (inclusive).
    Num { min: f64, max: f64 },
    /// A mapping with known keys.
    Obj(&'static Obj),
    /// A list of one type.
    List(&'static Ty),
    /// One value or a list of them.
    OneOrList(&'static Ty),
    /// A mapping whose keys depend on its `kind` (or `protocol`).
    Kinded(&'static Kinded),
    /// Accepted and not looked into (`usage`).
    Any,
}

/// A supported key.
#[derive(Debug)]
pub(crate) struct Field {
    pub key: &'static str,
    pub ty: Ty,
    pub required: bool,
}

/// A mapping: its supported keys and the Linkerd keys not supported yet.
#[derive(Debug)]
pub(crate) struct Obj {
    pub fields: &'static [Field],
    pub unsupported: &'static [&'static str],
}

/// A polymorphic mapping selected by a tag key.
#[derive(Debug)]
pub(crate) struct Kinded {
    /// The tag key: `kind`, or `protocol` for routers.
    pub tag: &'static str,
    /// The kind when the tag is absent; `None` makes the tag required.
    pub default: Option<&'static str>,
    /// Supported kinds and their keys (the tag itself excluded).
    pub kinds: &'static [(&'static str, Obj)],
    /// Linkerd kinds not supported yet.
    pub unsupported: &'static [&'static str],
}

const fn req(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        required: true,
    }
}

const fn opt(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        required: false,
    }
}

const PORT: Ty = Ty::Int { min: 0, max: 65535 };
const POSITIVE: Ty = Ty::Int {
    min: 1,
    max: i32::MAX as i128,
};
const MILLIS: Ty = Ty::Int {
    min: 0,
    max: i64::MAX as i128,
};

// ---------------------------------------------------------------- top level

/// The whole file.
pub(crate) static FILE: Obj = Obj {
    fields: &[
        opt("admin", Ty::Obj(&ADMIN)),
        opt("namers", Ty::List(&NAMER)),
        req("routers", Ty::List(&ROUTER)),
        // Linkerd's anonymous usage report: accepted, never sent.
        opt("usage", Ty::Any),
        opt("telemetry", Ty::List(&TELEMETER)),
    ],
    unsupported: &["tracers"],
};

// ---------------------------------------------------------------- telemetry

static TELEMETER: Ty = Ty::Kinded(&TELEMETER_KINDS);

/// A sample rate: a number from 0 to 1, checked when the config is typed
/// (the walk has no float type).
const RATE: Ty = Ty::Any;

static TELEMETER_KINDS: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        (
            "io.l5d.prometheus",
            Obj {
                fields: &[opt("path", Ty::Str), opt("prefix", Ty::Str)],
                unsupported: &[],
            },
        ),
        (
            "io.l5d.zipkin",
            Obj {
                fields: &[
                    opt("host", Ty::Str),
                    opt("port", PORT),
                    opt("sampleRate", RATE),
                ],
                unsupported: &["initialBufferSize", "maxBufferSize"],
            },
        ),
        (
            "io.l5d.recentRequests",
            Obj {
                fields: &[req("sampleRate", RATE), opt("capacity", POSITIVE)],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[
        "io.l5d.influxdb",
        "io.l5d.statsd",
        "io.l5d.tracelog",
        "io.l5d.zipkin.kafka",
        "io.zipkin.http",
        "io.zipkin.kafka",
        "io.l5d.opencensus",
        "io.l5d.dogstatsd",
        "io.l5d.istio",
    ],
};

static ADMIN: Obj = Obj {
    fields: &[
        opt("ip", Ty::Str),
        opt("port", PORT),
        opt("shutdownGraceMs", MILLIS),
        opt("tls", Ty::Obj(&SERVER_TLS)),
    ],
    unsupported: &[
        "socketOptions",
        "httpIdentifierPort",
        "security",
        "workerThreads",
    ],
};

// ------------------------------------------------------------------- namers

static NAMER: Ty = Ty::Kinded(&NAMER_KINDS);

static NAMER_KINDS: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[(
        "io.l5d.fs",
        Obj {
            fields: &[
                opt("prefix", Ty::Str),
                req("rootDir", Ty::Str),
                opt("experimental", Ty::Bool),
            ],
            unsupported: &["transformers"],
        },
    )],
    unsupported: &[
        "io.l5d.k8s",
        "io.l5d.k8s.external",
        "io.l5d.k8s.ns",
        "io.l5d.k8s.istio",
        "io.l5d.consul",
        "io.l5d.serversets",
        "io.l5d.zkLeader",
        "io.l5d.curator",
        "io.l5d.marathon",
        "io.l5d.dnssrv",
        "io.l5d.rancher",
        "io.l5d.rewrite",
    ],
};

// ------------------------------------------------------------------ routers

static ROUTER: Ty = Ty::Kinded(&ROUTER_KINDS);

static ROUTER_KINDS: Kinded = Kinded {
    tag: "protocol",
    default: None,
    kinds: &[
        (
            "http",
            Obj {
                fields: &[
                    opt("label", Ty::Str),
                    opt("dtab", Ty::Str),
                    opt("dstPrefix", Ty::Str),
                    opt("identifier", Ty::OneOrList(&HTTP_IDENTIFIER)),
                    opt("interpreter", Ty::Kinded(&INTERPRETER)),
                    opt("bindingTimeoutMs", MILLIS),
                    opt("bindingCache", Ty::Obj(&BINDING_CACHE)),
                    req("servers", Ty::List(&Ty::Obj(&HTTP_SERVER))),
                    opt("client", Ty::Kinded(&HTTP_CLIENT)),
                    opt("service", Ty::Kinded(&SERVICE)),
                    opt("maxCallDepth", POSITIVE),
                    opt("experimental", Ty::Bool),
                    opt("httpAccessLog", Ty::Str),
                ],
                unsupported: &[
                    "announcers",
                    "originator",
                    "timeoutMs",
                    "httpAccessLogRollPolicy",
                    "httpAccessLogAppend",
                    "httpAccessLogRotateCount",
                    "maxHeadersKB",
                    "maxInitialLineKB",
                    "maxErrResponseKB",
                    "maxRequestKB",
                    "maxResponseKB",
                    "maxChunkKB",
                    "streamAfterContentLengthKB",
                    "streamingEnabled",
                    "compressionLevel",
                    "tracePropagator",
                    "loggers",
                ],
            },
        ),
        (
            "h2",
            Obj {
                fields: &[
                    opt("label", Ty::Str),
                    opt("dtab", Ty::Str),
                    opt("dstPrefix", Ty::Str),
                    opt("identifier", Ty::OneOrList(&H2_IDENTIFIER)),
                    opt("interpreter", Ty::Kinded(&INTERPRETER)),
                    opt("bindingTimeoutMs", MILLIS),
                    opt("bindingCache", Ty::Obj(&BINDING_CACHE)),
                    req("servers", Ty::List(&Ty::Obj(&H2_SERVER))),
                    opt("client", Ty::Kinded(&H2_CLIENT)),
                    opt("service", Ty::Kinded(&SERVICE)),
                    opt("maxCallDepth", POSITIVE),
                    opt("experimental", Ty::Bool),
                    opt("h2AccessLog", Ty::Str),
                ],
                unsupported: &[
                    "announcers",
                    "originator",
                    "timeoutMs",
                    "h2AccessLogRollPolicy",
                    "h2AccessLogAppend",
                    "h2AccessLogRotateCount",
                    "tracePropagator",
                    "loggers",
                ],
            },
        ),
    ],
    unsupported: &["thrift", "thriftmux", "mux"],
};

static BINDING_CACHE: Obj = Obj {
    fields: &[
        opt("paths", POSITIVE),
        opt("trees", POSITIVE),
        opt("bounds", POSITIVE),
        opt("clients", POSITIVE),
        opt("idleTtlSecs", POSITIVE),
    ],
    unsupported: &[],
};

static HTTP_SERVER: Obj = Obj {
    fields: &[
        opt("ip", Ty::Str),
        opt("port", PORT),
        opt("maxConcurrentRequests", POSITIVE),
        opt("clearContext", Ty::Bool),
        opt("tls", Ty::Obj(&SERVER_TLS)),
    ],
    unsupported: &[
        "socketOptions",
        "announce",
        "serverSession",
        "addForwardedHeader",
        "timestampHeader",
    ],
};

// ---------------------------------------------------------------------- tls

/// `servers[].tls` and `admin.tls`.
static SERVER_TLS: Obj = Obj {
    fields: &[
        opt("enabled", Ty::Bool),
        req("certPath", Ty::Str),
        req("keyPath", Ty::Str),
        opt("intermediateCertsPath", Ty::Str),
        opt("caCertPath", Ty::Str),
        opt("requireClientAuth", Ty::Bool),
        opt("protocols", Ty::List(&Ty::Str)),
    ],
    unsupported: &["ciphers"],
};

/// `client.tls`.
static CLIENT_TLS: Obj = Obj {
    fields: &[
        opt("commonName", Ty::Str),
        opt("trustCertsBundle", Ty::Str),
        opt("trustCerts", Ty::List(&Ty::Str)),
        opt("disableValidation", Ty::Bool),
        opt("clientAuth", Ty::Obj(&CLIENT_AUTH)),
        opt("protocols", Ty::List(&Ty::Str)),
    ],
    unsupported: &["ciphers", "enabled"],
};

static CLIENT_AUTH: Obj = Obj {
    fields: &[
        req("certPath", Ty::Str),
        req("keyPath", Ty::Str),
        opt("intermediateCertsPath", Ty::Str),
    ],
    unsupported: &[],
};

/// Linkerd 1 reads an h2 router's `maxCallDepth` from its servers (an http
/// router's from the router); Switchyard accepts both places for h2.
static H2_SERVER: Obj = Obj {
    fields: &[
        opt("ip", Ty::Str),
        opt("port", PORT),
        opt("maxConcurrentRequests", POSITIVE),
        opt("clearContext", Ty::Bool),
        opt("tls", Ty::Obj(&SERVER_TLS)),
        opt("maxCallDepth", POSITIVE),
    ],
    unsupported: &[
        "socketOptions",
        "announce",
        "serverSession",
        "addForwardedHeader",
        "windowUpdateRatio",
        "headerTableBytes",
        "initialStreamWindowBytes",
        "maxConcurrentStreamsPerConnection",
        "maxFrameBytes",
        "maxHeaderListByts",
        "maxHeaderListBytes",
    ],
};

// -------------------------------------------------------------- identifiers

const HEADER_TOKEN: Obj = Obj {
    fields: &[opt("header", Ty::Str)],
    unsupported: &[],
};

static HTTP_IDENTIFIER: Ty = Ty::Kinded(&HTTP_IDENTIFIER_KINDS);

static HTTP_IDENTIFIER_KINDS: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        ("io.l5d.header.token", HEADER_TOKEN),
        (
            "io.l5d.methodAndHost",
            Obj {
                fields: &[opt("httpUriInDst", Ty::Bool)],
                unsupported: &[],
            },
        ),
        (
            "io.l5d.path",
            Obj {
                fields: &[opt("segments", POSITIVE), opt("consume", Ty::Bool)],
                unsupported: &[],
            },
        ),
        ("io.l5d.header", HEADER_TOKEN),
        (
            "io.l5d.static",
            Obj {
                fields: &[req("path", Ty::Str)],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &["io.l5d.ingress", "io.l5d.k8s.istio"],
};

static H2_IDENTIFIER: Ty = Ty::Kinded(&H2_IDENTIFIER_KINDS);

static H2_IDENTIFIER_KINDS: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        ("io.l5d.header.token", HEADER_TOKEN),
        (
            "io.l5d.header.path",
            Obj {
                fields: &[opt("header", Ty::Str), opt("segments", POSITIVE)],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &["io.l5d.ingress", "io.l5d.k8s.istio"],
};

// ------------------------------------------------------------- interpreters

static INTERPRETER: Kinded = Kinded {
    tag: "kind",
    default: Some("default"),
    kinds: &[
        (
            "default",
            Obj {
                fields: &[],
                unsupported: &["transformers"],
            },
        ),
        (
            "io.l5d.fs",
            Obj {
                fields: &[req("dtabFile", Ty::Str)],
                unsupported: &["transformers"],
            },
        ),
    ],
    unsupported: &[
        "io.l5d.namerd",
        "io.l5d.namerd.http",
        "io.l5d.mesh",
        "io.l5d.k8s.configMap",
        "io.l5d.consul.interpreter",
    ],
};

// ------------------------------------------------------------------ clients

/// Client keys supported, common to http and h2 (an `io.l5d.global` client
/// or an `io.l5d.static` entry).
const CLIENT_FIELDS: &[Field] = &[
    opt("loadBalancer", Ty::Kinded(&LOAD_BALANCER)),
    opt("failureAccrual", Ty::Kinded(&FAILURE_ACCRUAL)),
    opt("requeueBudget", Ty::Obj(&BUDGET)),
    opt("requestAttemptTimeoutMs", MILLIS),
    opt("hostConnectionPool", Ty::Obj(&HOST_CONNECTION_POOL)),
    opt("tls", Ty::Obj(&CLIENT_TLS)),
];

/// An `io.l5d.static` entry: a prefix and the client keys.
const STATIC_ENTRY_FIELDS: &[Field] = &[
    req("prefix", Ty::Str),
    opt("loadBalancer", Ty::Kinded(&LOAD_BALANCER)),
    opt("failureAccrual", Ty::Kinded(&FAILURE_ACCRUAL)),
    opt("requeueBudget", Ty::Obj(&BUDGET)),
    opt("requestAttemptTimeoutMs", MILLIS),
    opt("hostConnectionPool", Ty::Obj(&HOST_CONNECTION_POOL)),
    opt("tls", Ty::Obj(&CLIENT_TLS)),
];

/// Client keys of Linkerd 1 common to http and h2, not supported yet.
macro_rules! client_unsupported {
    ($($extra:literal),*) => {
        &[
            "failFast",
            "clientSession",
            "socketOptions",
            "forwardClientCert",
            "requestAuthorizers",
            $($extra),*
        ]
    };
}

const HTTP_CLIENT_UNSUPPORTED: &[&str] = client_unsupported!();
const H2_CLIENT_UNSUPPORTED: &[&str] = client_unsupported!(
    "windowUpdateRatio",
    "headerTableBytes",
    "initialStreamWindowBytes",
    "maxFrameBytes",
    "maxHeaderListByts",
    "maxHeaderListBytes"
);

static HTTP_STATIC_ENTRY: Obj = Obj {
    fields: STATIC_ENTRY_FIELDS,
    unsupported: HTTP_CLIENT_UNSUPPORTED,
};

static H2_STATIC_ENTRY: Obj = Obj {
    fields: STATIC_ENTRY_FIELDS,
    unsupported: H2_CLIENT_UNSUPPORTED,
};

static HTTP_CLIENT: Kinded = Kinded {
    tag: "kind",
    default: Some("io.l5d.global"),
    kinds: &[
        (
            "io.l5d.global",
            Obj {
                fields: CLIENT_FIELDS,
                unsupported: HTTP_CLIENT_UNSUPPORTED,
            },
        ),
        (
            "io.l5d.static",
            Obj {
                fields: &[req("configs", Ty::List(&Ty::Obj(&HTTP_STATIC_ENTRY)))],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

static H2_CLIENT: Kinded = Kinded {
    tag: "kind",
    default: Some("io.l5d.global"),
    kinds: &[
        (
            "io.l5d.global",
            Obj {
                fields: CLIENT_FIELDS,
                unsupported: H2_CLIENT_UNSUPPORTED,
            },
        ),
        (
            "io.l5d.static",
            Obj {
                fields: &[req("configs", Ty::List(&Ty::Obj(&H2_STATIC_ENTRY)))],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

const MAX_EFFORT: Field = opt("maxEffort", POSITIVE);
const RATIO: Ty = Ty::Num { min: 0.0, max: 1.0 };
const LOAD: Ty = Ty::Num {
    min: 0.0,
    max: f64::MAX,
};

static LOAD_BALANCER: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        (
            "p2c",
            Obj {
                fields: &[MAX_EFFORT],
                unsupported: &["enableProbation"],
            },
        ),
        (
            "ewma",
            Obj {
                fields: &[MAX_EFFORT, opt("decayTimeMs", MILLIS)],
                unsupported: &["enableProbation"],
            },
        ),
        (
            "aperture",
            Obj {
                fields: &[
                    MAX_EFFORT,
                    opt("smoothWindowMs", MILLIS),
                    opt("lowLoad", LOAD),
                    opt("highLoad", LOAD),
                    opt("minAperture", POSITIVE),
                ],
                unsupported: &["enableProbation"],
            },
        ),
        (
            "heap",
            Obj {
                fields: &[],
                unsupported: &["enableProbation"],
            },
        ),
        (
            "roundRobin",
            Obj {
                fields: &[MAX_EFFORT],
                unsupported: &["enableProbation"],
            },
        ),
    ],
    unsupported: &[],
};

/// A backoff: `failureAccrual.backoff` and `service.retries.backoff` alike.
static BACKOFF: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        (
            "constant",
            Obj {
                fields: &[opt("ms", MILLIS)],
                unsupported: &[],
            },
        ),
        (
            "jittered",
            Obj {
                fields: &[req("minMs", MILLIS), req("maxMs", MILLIS)],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

static FAILURE_ACCRUAL: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        (
            "io.l5d.consecutiveFailures",
            Obj {
                fields: &[
                    req("failures", POSITIVE),
                    opt("backoff", Ty::Kinded(&BACKOFF)),
                ],
                unsupported: &[],
            },
        ),
        (
            "io.l5d.successRate",
            Obj {
                fields: &[
                    req("successRate", RATIO),
                    req("requests", POSITIVE),
                    opt("backoff", Ty::Kinded(&BACKOFF)),
                ],
                unsupported: &[],
            },
        ),
        (
            "io.l5d.successRateWindowed",
            Obj {
                fields: &[
                    req("successRate", RATIO),
                    req("window", POSITIVE),
                    opt("backoff", Ty::Kinded(&BACKOFF)),
                ],
                unsupported: &[],
            },
        ),
        (
            "none",
            Obj {
                fields: &[],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

static BUDGET: Obj = Obj {
    fields: &[
        opt(
            "minRetriesPerSec",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
        opt(
            "percentCanRetry",
            Ty::Num {
                min: 0.0,
                max: 1000.0,
            },
        ),
        opt("ttlSecs", Ty::Int { min: 1, max: 60 }),
    ],
    unsupported: &[],
};

static HOST_CONNECTION_POOL: Obj = Obj {
    fields: &[
        opt(
            "minSize",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
        opt("maxSize", POSITIVE),
        opt("idleTimeMs", MILLIS),
        opt(
            "maxWaiters",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
    ],
    unsupported: &[],
};

// ----------------------------------------------------------------- services

/// `service:` (per logical name): `io.l5d.global` or `io.l5d.static`.
static SERVICE: Kinded = Kinded {
    tag: "kind",
    default: Some("io.l5d.global"),
    kinds: &[
        (
            "io.l5d.global",
            Obj {
                fields: SERVICE_KEYS,
                unsupported: &[],
            },
        ),
        (
            "io.l5d.static",
            Obj {
                fields: &[req("configs", Ty::List(&Ty::Obj(&SERVICE_ENTRY)))],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

/// The keys a service config sets (global, or each static entry).
const SERVICE_KEYS: &[Field] = &[
    opt("responseClassifier", Ty::Kinded(&RESPONSE_CLASSIFIER)),
    opt("retries", Ty::Obj(&RETRIES)),
    opt("totalTimeoutMs", MILLIS),
    opt("retryBufferSize", Ty::Obj(&RETRY_BUFFER_SIZE)),
    opt("classificationTimeoutMs", MILLIS),
];

static SERVICE_ENTRY: Obj = Obj {
    fields: &[
        req("prefix", Ty::Str),
        opt("responseClassifier", Ty::Kinded(&RESPONSE_CLASSIFIER)),
        opt("retries", Ty::Obj(&RETRIES)),
        opt("totalTimeoutMs", MILLIS),
        opt("retryBufferSize", Ty::Obj(&RETRY_BUFFER_SIZE)),
        opt("classificationTimeoutMs", MILLIS),
    ],
    unsupported: &[],
};

static RETRIES: Obj = Obj {
    fields: &[
        opt("budget", Ty::Obj(&RETRY_BUDGET)),
        opt("backoff", Ty::Kinded(&BACKOFF)),
    ],
    unsupported: &[],
};

/// A retry budget (`service.retries.budget`).
pub(crate) static RETRY_BUDGET: Obj = Obj {
    fields: &[
        opt(
            "minRetriesPerSec",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
        opt(
            "percentCanRetry",
            Ty::Num {
                min: 0.0,
                max: 1000.0,
            },
        ),
        opt("ttlSecs", POSITIVE),
    ],
    unsupported: &[],
};

static RETRY_BUFFER_SIZE: Obj = Obj {
    fields: &[
        opt(
            "requestBytes",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
        opt(
            "responseBytes",
            Ty::Int {
                min: 0,
                max: i32::MAX as i128,
            },
        ),
    ],
    unsupported: &[],
};

const NO_KEYS: Obj = Obj {
    fields: &[],
    unsupported: &[],
};

const GRPC_CLASSIFIER: Obj = Obj {
    fields: &[opt("successStatusCodes", Ty::List(&GRPC_CODE))],
    unsupported: &[],
};

const GRPC_CODE: Ty = Ty::Int { min: 0, max: 16 };

static RESPONSE_CLASSIFIER: Kinded = Kinded {
    tag: "kind",
    default: None,
    kinds: &[
        ("io.l5d.http.nonRetryable5XX", NO_KEYS),
        ("io.l5d.http.retryableRead5XX", NO_KEYS),
        ("io.l5d.http.retryableIdempotent5XX", NO_KEYS),
        ("io.l5d.http.retryableAll5XX", NO_KEYS),
        ("io.l5d.http.allSuccessful", NO_KEYS),
        ("io.l5d.h2.nonRetryable5XX", NO_KEYS),
        ("io.l5d.h2.retryableRead5XX", NO_KEYS),
        ("io.l5d.h2.retryableIdempotent5XX", NO_KEYS),
        ("io.l5d.h2.retryableAll5XX", NO_KEYS),
        ("io.l5d.h2.allSuccessful", NO_KEYS),
        ("io.l5d.h2.grpc.default", GRPC_CLASSIFIER),
        ("io.l5d.h2.grpc.compliant", GRPC_CLASSIFIER),
        ("io.l5d.h2.grpc.alwaysRetryable", GRPC_CLASSIFIER),
        ("io.l5d.h2.grpc.neverRetryable", GRPC_CLASSIFIER),
        (
            "io.l5d.h2.grpc.retryableStatusCodes",
            Obj {
                fields: &[
                    req("retryableStatusCodes", Ty::List(&GRPC_CODE)),
                    opt("successStatusCodes", Ty::List(&GRPC_CODE)),
                ],
                unsupported: &[],
            },
        ),
    ],
    unsupported: &[],
};

// --------------------------------------------------------------------- walk

/// Walks a document against the tables.
pub(crate) struct Walker<'a> {
    source: &'a str,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Where each value stands, by key path (`routers[0].dtab`).
    pub positions: std::collections::HashMap<String, Pos>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn place(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {path}")
    }
}

impl<'a> Walker<'a> {
    pub(crate) fn new(source: &'a str) -> Walker<'a> {
        Walker {
            source,
            problems: Vec::new(),
            positions: Default::default(),
        }
    }

    fn problem(&mut self, pos: Pos, message: String) {
        self.problems.push(Problem::at(self.source, pos, message));
    }

    /// Check `node` against `ty`; return it as JSON with default kinds
    /// filled in (for the typed deserialization).
    pub(crate) fn walk(&mut self, node: &Node, ty: &Ty, path: &str) -> serde_json::Value {
        self.positions.insert(path.to_string(), node.pos);
        use serde_json::Value as J;
        match (ty, &node.value) {
            (Ty::Any, v) => v.to_json(),
            (Ty::Str, Value::Str(s)) => J::String(s.clone()),
            // YAML reads `port: 80` as a number; where a string is wanted
            // (an `ip`, a `header`), scalars keep their text.
            (Ty::Str, Value::Int(i)) => J::String(i.to_string()),
            (Ty::Str, Value::Float(f)) => J::String(f.to_string()),
            (Ty::Bool, Value::Bool(b)) => J::Bool(*b),
            // Jackson (Linkerd) reads `port: "4140"` as a number too.
            (Ty::Int { .. }, Value::Str(s)) if s.trim().parse::<i128>().is_ok() => {
                let n = Node {
                    value: Value::Int(s.trim().parse::<i128>().unwrap_or_default()),
                    pos: node.pos,
                };
                self.walk(&n, ty, path)
            }
            (Ty::Int { min, max }, Value::Int(i)) => {
                if i < min || i > max {
                    self.problem(
                        node.pos,
                        format!("{path}: expected {}, found {i}", int_words(*min, *max)),
                    );
                    J::Null
                } else {
                    node.value.to_json()
                }
            }
            (Ty::Num { min, max }, Value::Int(_) | Value::Float(_)) => {
                let x = match node.value {
                    Value::Int(i) => i as f64,
                    Value::Float(f) => f,
                    _ => f64::NAN,
                };
                if x.is_nan() || x < *min || x > *max {
                    self.problem(
                        node.pos,
                        format!("{path}: expected {}, found {x}", num_words(*min, *max)),
                    );
                    J::Null
                } else {
                    serde_json::Number::from_f64(x).map_or(J::Null, J::Number)
                }
            }
            (Ty::Obj(obj), Value::Map(entries)) => {
                J::Object(self.walk_obj(obj, entries, node.pos, path, None))
            }
            (Ty::List(item), Value::Seq(items)) => J::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.walk(n, item, &format!("{path}[{i}]")))
                    .collect(),
            ),
            (Ty::OneOrList(item), Value::Seq(_)) => self.walk(node, &Ty::List(item), path),
            (Ty::OneOrList(item), _) => J::Array(vec![self.walk(node, item, path)]),
            (Ty::Kinded(k), Value::Map(entries)) => self.walk_kinded(k, entries, node.pos, path),
            (ty, v) => {
                let what = if path.is_empty() {
                    "the top level"
                } else {
                    path
                };
                self.problem(
                    node.pos,
                    format!("{what}: expected {}, found {}", ty_words(ty), v.kind_name()),
                );
                J::Null
            }
        }
    }

    fn walk_obj(
        &mut self,
        obj: &Obj,
        entries: &[(Key, Node)],
        pos: Pos,
        path: &str,
        tag: Option<&str>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (k, v) in entries {
            let sub = join(path, &k.name);
            if let Some(f) = obj.fields.iter().find(|f| f.key == k.name) {
                // `key:` with nothing after it means "not set", as in Linkerd.
                if v.value == Value::Null && !f.required {
                    continue;
                }
                let j = self.walk(v, &f.ty, &sub);
                out.insert(k.name.clone(), j);
            } else if obj.unsupported.contains(&k.name.as_str()) {
                self.problem(k.pos, format!("not supported yet: {sub}"));
            } else {
                let expected: Vec<&str> = tag
                    .into_iter()
                    .chain(obj.fields.iter().map(|f| f.key))
                    .collect();
                self.problem(
                    k.pos,
                    format!(
                        "unknown key '{}' {}; expected one of: {}",
                        k.name,
                        place(path),
                        expected.join(", ")
                    ),
                );
            }
        }
        for f in obj.fields.iter().filter(|f| f.required) {
            if !entries.iter().any(|(k, _)| k.name == f.key) {
                self.problem(pos, format!("missing key '{}' {}", f.key, place(path)));
            }
        }
        out
    }

    fn walk_kinded(
        &mut self,
        k: &Kinded,
        entries: &[(Key, Node)],
        pos: Pos,
        path: &str,
    ) -> serde_json::Value {
        let tag = entries.iter().find(|(key, _)| key.name == k.tag);
        let (kind, kind_pos) = match tag {
            Some((_, n)) => match &n.value {
                Value::Str(s) => (s.clone(), n.pos),
                v => {
                    self.problem(
                        n.pos,
                        format!(
                            "{}: expected a string, found {}",
                            join(path, k.tag),
                            v.kind_name()
                        ),
                    );
                    return serde_json::Value::Null;
                }
            },
            None => match k.default {
                Some(d) => (d.to_string(), pos),
                None => {
                    self.problem(pos, format!("missing key '{}' {}", k.tag, place(path)));
                    return serde_json::Value::Null;
                }
            },
        };
        let Some((_, obj)) = k.kinds.iter().find(|(name, _)| *name == kind) else {
            if k.unsupported.contains(&kind.as_str()) {
                self.problem(
                    kind_pos,
                    format!("not supported yet: {}: {kind}", join(path, k.tag)),
                );
            } else {
                let expected: Vec<&str> = k.kinds.iter().map(|(n, _)| *n).collect();
                self.problem(
                    kind_pos,
                    format!(
                        "unknown {} '{kind}' {}; expected one of: {}",
                        k.tag,
                        place(path),
                        expected.join(", ")
                    ),
                );
            }
            return serde_json::Value::Null;
        };
        let rest: Vec<(Key, Node)> = entries
            .iter()
            .filter(|(key, _)| key.name != k.tag)
            .cloned()
            .collect();
        let mut out = self.walk_obj(obj, &rest, pos, path, Some(k.tag));
        out.insert(k.tag.to_string(), serde_json::Value::String(kind));
        serde_json::Value::Object(out)
    }
}

fn int_words(min: i128, max: i128) -> String {
    if max >= i32::MAX as i128 {
        if min == 0 {
            "a non-negative integer".to_string()
        } else {
            format!("an integer of at least {min}")
        }
    } else {
        format!("an integer from {min} to {max}")
    }
}

fn num_words(min: f64, max: f64) -> String {
    format!("a number from {min} to {max}")
}

fn ty_words(ty: &Ty) -> String {
    match ty {
        Ty::Num { min, max } => num_words(*min, *max),
        Ty::Str => "a string".into(),
        Ty::Bool => "true or false".into(),
        Ty::Int { min, max } => int_words(*min, *max),
        Ty::Obj(_) | Ty::Kinded(_) => "a mapping".into(),
        Ty::List(_) => "a list".into(),
        Ty::OneOrList(_) => "a mapping or a list".into(),
        Ty::Any => "anything".into(),
    }
}
