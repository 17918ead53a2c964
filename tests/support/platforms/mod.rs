//! Fake social platforms over real HTTP on loopback, one module per platform. Each speaks
//! its platform's request and response shapes: it checks the method, path, auth and body
//! fields the real API requires, keeps what was posted (so replies, deletes and "did it
//! post?" lookups work), and answers with the platform's real success bodies, throttle
//! responses and error bodies. A test scripts faults for the next requests to a route:
//! a throttle, an error, or a timeout after the post was made.
//!
//! Each fake is one handler that records every request and routes by method and path,
//! so what a channel sent can be asserted byte for byte.

pub mod bluesky;
pub mod discord;
pub mod mastodon;
pub mod meta;
pub mod nextdoor;
pub mod slack;
pub mod teams;
pub mod telegram;
pub mod twilio;
pub mod x;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as a fake received it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The form-encoded body, or the query string for a GET.
    pub fn form(&self) -> HashMap<String, String> {
        let src = if self.body.is_empty() { self.query.as_bytes() } else { &self.body[..] };
        url::form_urlencoded::parse(src).into_owned().collect()
    }

    pub fn query_map(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.query.as_bytes()).into_owned().collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(|h| h.strip_prefix("Bearer "))
    }

    /// The text fields of a multipart body (files are skipped), parsed by hand.
    pub fn multipart_fields(&self) -> HashMap<String, Vec<u8>> {
        let ct = self.header("content-type").unwrap_or("");
        let Some(boundary) = ct.split("boundary=").nth(1) else { return HashMap::new() };
        let delim = format!("--{boundary}");
        let body = &self.body[..];
        let mut out = HashMap::new();
        let text = body;
        let mut parts = Vec::new();
        let mut start = 0;
        while let Some(pos) = find(&text[start..], delim.as_bytes()) {
            parts.push(start + pos);
            start += pos + delim.len();
        }
        for w in parts.windows(2) {
            let part = &text[w[0] + delim.len()..w[1]];
            let Some(split) = find(part, b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&part[..split]);
            let mut content = &part[split + 4..];
            if content.ends_with(b"\r\n") {
                content = &content[..content.len() - 2];
            }
            if let Some(name) = head.split("name=\"").nth(1).and_then(|s| s.split('"').next()) {
                out.insert(name.to_owned(), content.to_vec());
            }
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the next request to a route gets instead of the normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this instead, doing nothing.
    Respond { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// Do the work (make the post), then keep the client waiting this long before the
    /// answer: a timeout after sending.
    AfterWork(Duration),
    /// Answer normally (to fault a later request, not this one).
    Pass,
}

impl Fault {
    pub fn respond(status: u16, headers: &[(&'static str, &str)], body: &str) -> Fault {
        Fault::Respond {
            status,
            headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            body: body.to_owned(),
        }
    }
}

/// What every fake keeps: the requests, the scripted faults, an id counter.
#[derive(Debug, Default)]
pub struct Common {
    hits: Mutex<Vec<Hit>>,
    faults: Mutex<Vec<(String, Fault)>>,
    ids: AtomicU64,
}

impl Common {
    pub fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Hit {
        let hit = Hit {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        };
        self.hits.lock().expect("hits").push(hit.clone());
        hit
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits").clone()
    }

    /// Requests to paths containing `part` with `method`.
    pub fn hits_to(&self, method: &str, part: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.method.as_str() == method && h.path.contains(part)).collect()
    }

    /// The next request to `route` (the fake's name for it) gets `fault`.
    pub fn fault(&self, route: &str, fault: Fault) {
        self.faults.lock().expect("faults").push((route.to_owned(), fault));
    }

    pub fn take_fault(&self, route: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("faults");
        let i = faults.iter().position(|(r, _)| r == route)?;
        Some(faults.remove(i).1)
    }

    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A JSON response with headers.
pub fn json(status: u16, headers: &[(&str, String)], body: serde_json::Value) -> Response {
    raw(status, headers, "application/json; charset=utf-8", body.to_string())
}

pub fn raw(status: u16, headers: &[(&str, String)], content_type: &str, body: String) -> Response {
    let mut r = (StatusCode::from_u16(status).expect("status"), body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_str(content_type).expect("ct"));
    for (k, v) in headers {
        r.headers_mut()
            .insert(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("v"));
    }
    r
}

/// Answer a scripted fault, or run `work` (and, for `AfterWork`, hold its answer back).
pub async fn with_fault(common: &Common, route: &str, work: impl FnOnce() -> Response) -> Response {
    match common.take_fault(route) {
        Some(Fault::Respond { status, headers, body }) => {
            let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, v.clone())).collect();
            let ct = if body.starts_with('{') || body.starts_with('[') { "application/json" } else { "text/plain" };
            raw(status, &headers, ct, body)
        }
        Some(Fault::AfterWork(d)) => {
            let r = work();
            tokio::time::sleep(d).await;
            r
        }
        Some(Fault::Pass) | None => work(),
    }
}

/// A fake server; the task stops when this is dropped.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `router` on a free loopback port.
pub async fn serve(router: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // Platforms take uploads far larger than axum's default 2 MB; limits are checked by
    // the tests on what arrives.
    let router = router.layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { url, task }
}

/// A delivery's own values, for calling a channel directly.
#[derive(Clone)]
pub struct Job {
    pub id: i64,
    pub key: String,
    pub text: String,
    pub incident: String,
    pub scratch: std::collections::BTreeMap<String, String>,
}

pub fn job(id: i64, text: &str) -> Job {
    Job {
        id,
        key: format!("bh-key-{id}"),
        text: text.to_owned(),
        incident: format!("json:INC-{id}"),
        scratch: Default::default(),
    }
}

/// A post request for `job` (no store: scratch values are not persisted).
pub fn request<'a>(
    job: &'a Job,
    reply_to: Option<&'a bullhorn::channel::PostRef>,
    media: &'a [bullhorn::channel::Image],
) -> bullhorn::channel::Request<'a> {
    let post = bullhorn::channel::Post {
        delivery_id: job.id,
        key: &job.key,
        kind: bullhorn::lifecycle::DeliveryKind::Post,
        priority: bullhorn::event::Priority::Critical,
        text: &job.text,
        parts: &[],
        subject: None,
        html: None,
        language: "en-US",
        created_at: 1_795_000_000_000 + job.id,
        event: bullhorn::channel::About {
            id: job.id,
            incident: &job.incident,
            event_type: "missing_child",
            msg_type: "alert",
            status: "actual",
            revision: Some(1),
            json: "{}",
        },
    };
    bullhorn::channel::Request {
        post,
        text: &job.text,
        step: 0,
        target: 0,
        reply_to,
        root: reply_to,
        media,
        scratch: bullhorn::channel::Scratch::new(&job.scratch, 0, None),
    }
}

/// Channel context for direct calls: a short timeout so "timeout after send" is quick.
pub fn context(state_dir: &std::path::Path, timeout: Duration) -> bullhorn::channel::Context {
    bullhorn::channel::Context {
        http: bullhorn::channel::http::client().expect("client"),
        timeout,
        state_dir: state_dir.to_path_buf(),
    }
}

/// A small real PNG (1x1), for media flows.
pub fn png() -> bullhorn::channel::Image {
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF,
        0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    bullhorn::channel::Image {
        bytes: Bytes::from_static(PNG),
        mime: "image/png".to_owned(),
        alt: "Photo of Sofia Ramirez, 6".to_owned(),
        url: Some("https://media.sheriff.example/amber/sofia.png".to_owned()),
    }
}

/// A `[channels.NAME]` block.
pub fn block(name: &str, body: &str) -> String {
    format!("[channels.{name}]\n{body}\n")
}

/// A fake of every platform but Bluesky (a test brings the fake or the reference PDS),
/// with the config of one channel on each.
#[derive(Debug)]
pub struct Fleet {
    pub masto: Arc<mastodon::Fake>,
    pub x: Arc<x::Fake>,
    pub meta: Arc<meta::Fake>,
    pub tg: Arc<telegram::Fake>,
    pub discord: Arc<discord::Fake>,
    pub slack: Arc<slack::Fake>,
    pub teams: Arc<teams::Fake>,
    pub nd: Arc<nextdoor::Fake>,
    pub sms: Arc<twilio::Fake>,
    /// `[channels.*]` for masto, x, fb, ig, threads, tg, discord, slack, teams, nd, sms.
    pub channels: String,
    _servers: Vec<Server>,
}

impl Fleet {
    pub async fn start() -> Fleet {
        let (masto_srv, masto) = mastodon::start().await;
        let (x_srv, x) = x::start().await;
        let (meta_srv, meta) = meta::start().await;
        let (tg_srv, tg) = telegram::start().await;
        let (dc_srv, discord) = discord::start().await;
        let (slack_srv, slack) = slack::start().await;
        let (teams_srv, teams) = teams::start().await;
        let (nd_srv, nd) = nextdoor::start().await;
        let (sms_srv, sms) = twilio::start().await;
        let channels = [
            block(
                "masto",
                &format!("kind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"", masto_srv.url, mastodon::TOKEN),
            ),
            block(
                "x",
                &format!(
                    "kind = \"x\"\nbase_url = \"{}\"\nconsumer_key = \"{}\"\nconsumer_secret = \"{}\"\naccess_token = \"{}\"\naccess_token_secret = \"{}\"",
                    x_srv.url,
                    x::CONSUMER_KEY,
                    x::CONSUMER_SECRET,
                    x::ACCESS_TOKEN,
                    x::ACCESS_SECRET
                ),
            ),
            block(
                "fb",
                &format!(
                    "kind = \"facebook\"\nbase_url = \"{}/v23.0\"\npage_id = \"{}\"\naccess_token = \"{}\"",
                    meta_srv.url,
                    meta::PAGE,
                    meta::TOKEN
                ),
            ),
            block(
                "ig",
                &format!(
                    "kind = \"instagram\"\nbase_url = \"{}/v23.0\"\nuser_id = \"{}\"\naccess_token = \"{}\"",
                    meta_srv.url,
                    meta::IG,
                    meta::TOKEN
                ),
            ),
            block(
                "threads",
                &format!(
                    "kind = \"threads\"\nbase_url = \"{}/v1.0\"\nuser_id = \"{}\"\naccess_token = \"{}\"",
                    meta_srv.url,
                    meta::THREADS,
                    meta::TOKEN
                ),
            ),
            block(
                "tg",
                &format!(
                    "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"{}\"\nchat_id = \"{}\"",
                    tg_srv.url,
                    telegram::TOKEN,
                    telegram::CHAT
                ),
            ),
            block("discord", &format!("kind = \"discord\"\nwebhook_url = \"{}\"", discord::Fake::url(&dc_srv.url))),
            block(
                "slack",
                &format!(
                    "kind = \"slack\"\nbase_url = \"{}/api\"\nbot_token = \"{}\"\nchannel = \"{}\"",
                    slack_srv.url,
                    slack::BOT_TOKEN,
                    slack::CHANNEL
                ),
            ),
            block("teams", &format!("kind = \"teams\"\nwebhook_url = \"{}\"", teams::Fake::url(&teams_srv.url))),
            block("nd", &format!("kind = \"nextdoor\"\nbase_url = \"{}\"\naccess_token = \"nd-access-0\"", nd_srv.url)),
            block(
                "sms",
                &format!(
                    "kind = \"sms\"\nbase_url = \"{}\"\naccount_sid = \"{}\"\nauth_token = \"{}\"\nfrom = \"{}\"\nto = [\"+15555550101\"]",
                    sms_srv.url,
                    twilio::SID,
                    twilio::AUTH_TOKEN,
                    twilio::FROM
                ),
            ),
        ]
        .concat();
        let servers = vec![masto_srv, x_srv, meta_srv, tg_srv, dc_srv, slack_srv, teams_srv, nd_srv, sms_srv];
        Fleet { masto, x, meta, tg, discord, slack, teams, nd, sms, channels, _servers: servers }
    }
}
