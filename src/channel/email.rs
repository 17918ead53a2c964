//! Email over SMTP, with lettre: each request is one SMTP session (connect, STARTTLS or
//! implicit TLS, AUTH, one message, QUIT), driven command by command so that every
//! failure is known to have come before the message or after it.
//!
//! The message is MIME built by lettre: the text, the HTML alternative when the channel
//! has an `email.html` template, and the alert's image (inline in the HTML, attached to a
//! text-only mail) with its alt text. Its `Message-ID` derives from the delivery's
//! idempotency key, the same for every recipient and every retry, so a receiver's system
//! can drop a resend; an update, cancellation or correction carries `In-Reply-To` and
//! `References` naming the original's, so mail clients thread them.
//!
//! Recipients: one message each (a step of the delivery each, like SMS numbers), or one
//! message to all of them as Bcc (`one_message = true`). The list a delivery began with
//! is saved at its first step, so a reload that edits `to` cannot send one recipient the
//! alert twice and skip another.
//!
//! Outcomes from reply codes, by the command answered: 421, and 451 outside RCPT, pause
//! the channel (the server asked for time); a 4xx at RCPT (greylisting, a full mailbox)
//! and every other 4xx retry with backoff, and give up in time; a 5xx at RCPT refuses that
//! recipient only (the others still get it); a 5xx to MAIL (the sender refused) or to
//! AUTH (530/535) stops the channel until someone fixes its settings; a 5xx to the
//! message itself (too large, refused as spam) refuses that message. A connection that
//! fails before the whole message is written is known not to have sent; one lost after
//! that, while the answer is awaited, is unknown, and SMTP cannot be asked afterwards
//! (the profile's recovery is "cannot tell").

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::Address;
use lettre::message::header::{ContentDisposition, ContentId, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::ExposeSecret as _;

use super::{Api, Caps, Context, Image, Outcome, PostRef, Request, Response, Verified};
use crate::config::{EmailSettings, EmailTls};
use crate::platform::Platform;

/// How long a 421 or 451 pauses the channel: the server asked for time.
const PAUSE: Duration = Duration::from_secs(60);
/// How long to wait for the answer to a whole message: servers scan it before they
/// answer (RFC 5321 §4.5.3.2 suggests up to 10 minutes; a resend after giving up early
/// would be a duplicate).
const MESSAGE_ANSWER: Duration = Duration::from_secs(300);
/// The slowest upload a message's write is given time for, in bytes a second.
const SLOWEST_UPLOAD: u64 = 32 * 1024;
/// How long QUIT (or giving up on a session) may take.
const QUIT: Duration = Duration::from_secs(2);
/// A subject longer than this is cut (RFC 5322 advises lines under 78 characters; mail
/// clients show about this much).
const MAX_SUBJECT: usize = 200;

#[derive(Debug)]
pub struct Email {
    s: EmailSettings,
    timeout: Duration,
    hello: ClientId,
    /// Built once (it reads the system's certificates); why not, when it cannot be.
    tls: Result<Tls, String>,
}

/// The TLS settings, opaque to `Debug`.
#[derive(Clone)]
struct Tls(TlsParameters);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// The command an SMTP failure answered, which decides what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Rcpt,
    Data,
    /// The message itself, answered after its final dot.
    Message,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Message => "the message",
        }
    }
}

/// Who a delivery goes to, as its first step saw it.
struct Kept {
    one_message: bool,
    to: Vec<Mailbox>,
}

impl Kept {
    /// As saved with the first step: `bcc` or `each`, then an address a line.
    fn saved(&self) -> String {
        let mut out = if self.one_message { "bcc".to_owned() } else { "each".to_owned() };
        for m in &self.to {
            out.push('\n');
            out.push_str(&m.to_string());
        }
        out
    }
}

/// A command that failed: the server's answer or the connection's error, or no answer.
enum Broke {
    Smtp(SmtpError),
    Timeout(Duration),
}

impl Broke {
    /// The reply code, if the server answered.
    fn code(&self) -> Option<u16> {
        match self {
            Broke::Smtp(e) => e.status().map(u16::from),
            Broke::Timeout(_) => None,
        }
    }
}

impl std::fmt::Display for Broke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broke::Smtp(e) => write!(f, "{e}"),
            Broke::Timeout(d) => write!(f, "no answer within {}", humantime::format_duration(*d)),
        }
    }
}

impl Email {
    pub fn new(s: EmailSettings, ctx: &Context) -> Self {
        let tls = match s.tls {
            EmailTls::None => Err("no TLS".to_owned()),
            EmailTls::StartTls | EmailTls::Implicit => {
                let mut b = TlsParameters::builder(s.host.clone());
                let ca = s.ca_pem.as_deref().map(Certificate::from_pem).transpose();
                match ca {
                    Ok(ca) => {
                        if let Some(ca) = ca {
                            b = b.add_root_certificate(ca);
                        }
                        b.build_rustls().map(Tls).map_err(|e| format!("TLS settings: {e}"))
                    }
                    Err(e) => Err(format!("ca_file: {e}")),
                }
            }
        };
        Email { s, timeout: ctx.timeout, hello: ClientId::default(), tls }
    }

    fn tls(&self) -> Result<TlsParameters, Outcome> {
        self.tls.clone().map(|t| t.0).map_err(Outcome::Credentials)
    }

    /// `f`, bounded by `limit`.
    async fn within<T>(&self, f: impl Future<Output = Result<T, SmtpError>>, limit: Duration) -> Result<T, Broke> {
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(Broke::Smtp(e)),
            Err(_) => Err(Broke::Timeout(limit)),
        }
    }

    /// A session ready for a message: connected, secured, authenticated.
    async fn open(&self) -> Result<AsyncSmtpConnection, Outcome> {
        let at = format!("{}:{}", self.s.host, self.s.port);
        let implicit = match self.s.tls {
            EmailTls::Implicit => Some(self.tls()?),
            EmailTls::StartTls | EmailTls::None => None,
        };
        let connect = AsyncSmtpConnection::connect_tokio1(
            (self.s.host.as_str(), self.s.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        );
        let mut conn = self.within(connect, self.timeout).await.map_err(|e| session(&e, &at))?;
        if self.s.tls == EmailTls::StartTls {
            if !conn.server_info().supports_feature(Extension::StartTls) {
                let _ = tokio::time::timeout(QUIT, conn.abort()).await;
                // Never fall back to plain text: someone may be stripping it.
                return Err(Outcome::Unavailable(format!(
                    "{at} does not offer STARTTLS, which this channel requires (tls = \"none\" only for a relay on this host)"
                )));
            }
            let tls = self.tls()?;
            self.within(conn.starttls(tls, &self.hello), self.timeout).await.map_err(|e| session(&e, &at))?;
        }
        if let (Some(user), Some(password)) = (&self.s.username, &self.s.password) {
            let creds = Credentials::new(user.clone(), password.expose_secret().to_owned());
            let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds);
            if let Err(e) = self.within(auth, self.timeout).await {
                let _ = tokio::time::timeout(QUIT, conn.abort()).await;
                return Err(match (&e, e.code()) {
                    (Broke::Timeout(_), _) => Outcome::Unavailable(format!("{at}: AUTH: {e}")),
                    (_, Some(code)) if code < 500 => Outcome::Unavailable(format!("{at}: AUTH: {e}")),
                    // Refused, or no mechanism in common.
                    _ => Outcome::Credentials(format!("{at} refused the account {user:?}: {e}")),
                });
            }
        }
        Ok(conn)
    }

    /// The recipients a delivery keeps to: those its first step saved, else the
    /// channel's now.
    fn kept(&self, saved: Option<&str>) -> Kept {
        let parsed = saved.and_then(|v| {
            let mut lines = v.lines();
            let one_message = match lines.next()? {
                "bcc" => true,
                "each" => false,
                _ => return None,
            };
            let to: Option<Vec<Mailbox>> = lines.map(|l| l.parse().ok()).collect();
            Some(Kept { one_message, to: to? })
        });
        parsed.unwrap_or_else(|| Kept { one_message: self.s.one_message, to: self.s.to.clone() })
    }

    /// The requests of a delivery that may have begun under other settings.
    pub fn caps_for(&self, saved: &BTreeMap<String, String>) -> Caps {
        let kept = self.kept(saved.get("to:0").map(String::as_str));
        let targets = if kept.one_message { 1 } else { kept.to.len().max(1) };
        Caps { targets, ..Caps::of(Self::PLATFORM) }
    }

    /// The Message-ID of a delivery (without its brackets): its idempotency key, in the
    /// sender's domain, the same for every recipient and every retry.
    fn message_id(&self, key: &str) -> String {
        format!("{key}@{}", self.s.from.email.domain())
    }

    /// The message of `req` to `to` (the header; the envelope is separate).
    fn message(&self, req: &Request<'_>, to: &Mailbox) -> Result<Message, String> {
        let id = self.message_id(req.post.key);
        let text = req.text;
        let subject = req.post.subject.map_or_else(|| subject_of(text), one_line);
        let mut b = Message::builder()
            .from(self.s.from.clone())
            .to(to.clone())
            .subject(subject)
            .message_id(Some(format!("<{id}>")))
            .user_agent(concat!("bullhorn/", env!("CARGO_PKG_VERSION")).to_owned());
        if let Some(r) = &self.s.reply_to {
            b = b.reply_to(r.clone());
        }
        // Threading: the original (and the first of its thread) by their Message-IDs.
        let mut refs: Vec<String> = Vec::new();
        for p in [req.root, req.reply_to].into_iter().flatten() {
            if let Some(i) = p.id.as_deref().filter(|i| !i.is_empty()) {
                let r = format!("<{i}>");
                if !refs.contains(&r) {
                    refs.push(r);
                }
            }
        }
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()).filter(|i| !i.is_empty()) {
            b = b.in_reply_to(format!("<{parent}>"));
        }
        if !refs.is_empty() {
            b = b.references(refs.join(" "));
        }
        let body = body(text, req.post.html, req.media).map_err(|e| format!("cannot build the message: {e}"))?;
        b.multipart(body).map_err(|e| format!("cannot build the message: {e}"))
    }

    /// One session: MAIL, RCPT for each recipient (a refused one is skipped), DATA, the
    /// message. `Ok` with the recipients skipped and why.
    async fn deliver(&self, req: &Request<'_>) -> Result<Vec<String>, Outcome> {
        let kept = self.kept(req.scratch.first("to"));
        if req.step == 0 && req.scratch.get("to").is_none() {
            // Kept for the whole delivery, before anything is sent.
            if let Err(e) = req.scratch.save("to", &kept.saved()).await {
                return Err(Outcome::Retry(format!("cannot record the recipients: {e}")));
            }
        }
        let recipients: Vec<&Mailbox> =
            if kept.one_message { kept.to.iter().collect() } else { kept.to.get(req.target).into_iter().collect() };
        let Some(first) = recipients.first() else {
            return Err(Outcome::Permanent(format!("no recipient number {}", req.target + 1)));
        };
        // One message to several goes To the sender, its recipients only in the envelope.
        let header_to = if kept.one_message { &self.s.from } else { first };
        let message = self.message(req, header_to).map_err(Outcome::Permanent)?;
        let bytes = message.formatted();
        let mut conn = self.open().await?;
        let result = self.transaction(&mut conn, &recipients, &bytes).await;
        match &result {
            // The answer is in; QUIT is a courtesy.
            Ok(_) => drop(tokio::time::timeout(QUIT, conn.quit()).await),
            Err(_) => drop(tokio::time::timeout(QUIT, conn.abort()).await),
        }
        result
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        recipients: &[&Mailbox],
        bytes: &[u8],
    ) -> Result<Vec<String>, Outcome> {
        let envelope: Vec<&Address> = recipients.iter().map(|m| &m.email).collect();
        let mut options = Vec::new();
        let ascii = |a: &Address| <Address as AsRef<str>>::as_ref(a).is_ascii();
        if !(ascii(&self.s.from.email) && envelope.iter().all(|a| ascii(a))) {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                // The same for every message: the settings must change.
                return Err(Outcome::Credentials(
                    "an address is not ASCII and the server does not take SMTPUTF8".to_owned(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !bytes.is_ascii() {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(Some(self.s.from.email.clone()), options);
        self.within(conn.command(mail), self.timeout).await.map_err(|e| reply(&e, Stage::Mail))?;
        let mut skipped = Vec::new();
        let mut accepted = 0;
        for to in &envelope {
            match self.within(conn.command(Rcpt::new((*to).clone(), Vec::new())), self.timeout).await {
                Ok(_) => accepted += 1,
                Err(e) => match reply(&e, Stage::Rcpt) {
                    // This recipient cannot get it; the others still may.
                    Outcome::Permanent(why) => skipped.push(format!("not sent to {to}: {why}")),
                    // Nothing is sent until every recipient can have it.
                    other => return Err(other),
                },
            }
        }
        if accepted == 0 {
            return Err(Outcome::Permanent(skipped.join("; ")));
        }
        self.within(conn.command(Data), self.timeout).await.map_err(|e| reply(&e, Stage::Data))?;
        // Time to write the message at the slowest upload we allow, then to be answered.
        let upload = Duration::from_secs(u64::try_from(bytes.len()).unwrap_or(u64::MAX) / SLOWEST_UPLOAD);
        let wait = self.timeout.max(upload) + MESSAGE_ANSWER.max(self.timeout);
        let written = AtomicBool::new(false);
        let chunks = Chunks { rest: bytes, written: &written };
        match self.within(conn.message_iter(chunks), wait).await {
            Ok(_) => Ok(skipped),
            // A reply refusing the message: nothing was accepted.
            Err(e) if e.code().is_some() => Err(reply(&e, Stage::Message)),
            // Cut off before the whole message was written: the server cannot have taken
            // it (it ends only with the final dot).
            Err(e) if !written.load(Ordering::SeqCst) => {
                Err(Outcome::Retry(format!("the message could not be written: {e}")))
            }
            // The message went; its answer did not come.
            Err(e) => Err(Outcome::Unknown(format!("the message was sent but not answered: {e}"))),
        }
    }
}

/// The message in pieces for lettre to write; `written` is set once the last piece is
/// handed over and written (lettre writes each piece before asking for the next), so
/// that only the final dot and the answer are left.
struct Chunks<'a> {
    rest: &'a [u8],
    written: &'a AtomicBool,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            self.written.store(true, Ordering::SeqCst);
            return None;
        }
        // Whole lines, so the dot-stuffing codec sees each line start.
        let cut = self.rest.len().min(64 * 1024);
        let cut = self.rest[..cut].iter().rposition(|b| *b == b'\n').map_or(cut, |i| i + 1);
        let (piece, rest) = self.rest.split_at(cut);
        self.rest = rest;
        Some(piece)
    }
}

impl Api for Email {
    const PLATFORM: Platform = Platform::Email;

    async fn send(&self, req: &Request<'_>) -> Response {
        match self.deliver(req).await {
            Ok(skipped) => {
                let post = PostRef::id(self.message_id(req.post.key));
                let note = (!skipped.is_empty()).then(|| skipped.join("; "));
                Response::from(Outcome::Sent(post)).with_note(note)
            }
            Err(o) => o.into(),
        }
    }

    /// Connect, secure and authenticate, then QUIT without sending.
    async fn verify(&self) -> Verified {
        let mut conn = match self.open().await {
            Ok(c) => c,
            Err(o) => return Verified::Failed(why(&o)),
        };
        let secured = if conn.is_encrypted() { "TLS" } else { "no TLS" };
        let _ = tokio::time::timeout(QUIT, conn.quit()).await;
        let auth = match &self.s.username {
            Some(u) => format!("signed in as {u:?}"),
            None => "no AUTH".to_owned(),
        };
        let n = self.s.to.len();
        Verified::Ok(format!(
            "{} at {}:{} ({secured}, {auth}); sends to {n} recipient{}{}",
            self.s.from,
            self.s.host,
            self.s.port,
            if n == 1 { "" } else { "s" },
            if self.s.one_message { " in one message" } else { ", one message each" }
        ))
    }

    /// A step per recipient, unless one message goes to all.
    fn caps(&self) -> Caps {
        self.caps_for(&BTreeMap::new())
    }
}

/// The subject of a message whose delivery has none of its own (a correction, a test):
/// the text's first line, cut to fit.
pub fn subject_of(text: &str) -> String {
    one_line(text.lines().find(|l| !l.trim().is_empty()).unwrap_or("Alert"))
}

/// `text` as one header line of at most [`MAX_SUBJECT`] characters.
pub fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_SUBJECT {
        return line;
    }
    let cut: String = line.chars().take(MAX_SUBJECT - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The MIME body: the text, the HTML alternative, the images (inline in the HTML,
/// attached to a text-only mail), each image with its alt text.
fn body(text: &str, html: Option<&str>, media: &[Image]) -> Result<MultiPart, String> {
    let mut plain = text.to_owned();
    for (i, m) in media.iter().enumerate() {
        let label = if media.len() > 1 { format!("Photo {}", i + 1) } else { "Photo".to_owned() };
        plain.push_str(&format!("\n\n[{label}: {}]", m.alt));
    }
    // Each image as a part: inline (named by its Content-ID) or attached.
    let image = |i: usize, m: &Image, inline: bool| -> Result<SinglePart, String> {
        let ct = ContentType::parse(&m.mime).map_err(|e| format!("{}: {e}", m.mime))?;
        let name = format!("photo-{}.{}", i + 1, m.mime.rsplit('/').next().unwrap_or("bin"));
        let b = SinglePart::builder().header(ct).header(ContentDescription(m.alt.clone()));
        let b = if inline {
            b.header(ContentId::from(format!("<{}>", cid(i)))).header(ContentDisposition::inline_with_name(&name))
        } else {
            b.header(ContentDisposition::attachment(&name))
        };
        Ok(b.body(m.bytes.to_vec()))
    };
    let Some(html) = html else {
        let mut mixed = MultiPart::mixed().singlepart(SinglePart::plain(plain));
        for (i, m) in media.iter().enumerate() {
            mixed = mixed.singlepart(image(i, m, false)?);
        }
        return Ok(mixed);
    };
    if media.is_empty() {
        return Ok(MultiPart::alternative_plain_html(plain, html.to_owned()));
    }
    let figures: String = media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "<p><img src=\"cid:{}\" alt=\"{}\" style=\"max-width:100%;height:auto\"></p>\n",
                cid(i),
                minijinja::HtmlEscape(&m.alt)
            )
        })
        .collect();
    let html = match html.rfind("</body>") {
        Some(at) => format!("{}{figures}{}", &html[..at], &html[at..]),
        None => format!("{html}\n{figures}"),
    };
    let mut related = MultiPart::related().singlepart(SinglePart::html(html));
    for (i, m) in media.iter().enumerate() {
        related = related.singlepart(image(i, m, true)?);
    }
    Ok(MultiPart::alternative().singlepart(SinglePart::plain(plain)).multipart(related))
}

/// The Content-ID of image `i`.
fn cid(i: usize) -> String {
    format!("photo{}", i + 1)
}

/// `Content-Description` (RFC 2045): an image's alt text, for readers that show it.
#[derive(Debug, Clone)]
struct ContentDescription(String);

impl Header for ContentDescription {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Description")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentDescription(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), one_line(&self.0))
    }
}

/// What a failed command means, known not to have sent the message.
fn reply(e: &Broke, stage: Stage) -> Outcome {
    let detail = format!("{}: {e}", stage.name());
    match (e.code(), stage) {
        (Some(530 | 534 | 535 | 538), _) => Outcome::Credentials(detail),
        // One recipient greylisted or over quota: that recipient is tried again, with
        // backoff, and given up on in time; the channel goes on.
        (Some(400..=499), Stage::Rcpt) => Outcome::Retry(detail),
        (Some(421 | 451), _) => Outcome::RetryAfter(PAUSE, detail),
        (Some(400..=499), _) => Outcome::Retry(detail),
        // That recipient does not exist or refuses us; the others may not.
        (Some(_), Stage::Rcpt) => Outcome::Permanent(detail),
        // The sender is refused: every message would be. Someone must fix the settings.
        (Some(_), Stage::Mail) => Outcome::Credentials(format!("the server refused the sender: {detail}")),
        // This message is refused (too large, taken for spam).
        (Some(_), Stage::Data | Stage::Message) => Outcome::Permanent(detail),
        // The connection broke, or the server fell silent, before the message went.
        (None, _) => Outcome::Retry(detail),
    }
}

/// The words of an outcome, for `check --online`.
fn why(o: &Outcome) -> String {
    match o {
        Outcome::Sent(_) => "sent".to_owned(),
        Outcome::RetryAfter(_, m)
        | Outcome::Unavailable(m)
        | Outcome::Credentials(m)
        | Outcome::Retry(m)
        | Outcome::Permanent(m)
        | Outcome::Unknown(m) => m.clone(),
    }
}

/// What a failure to open a session means: the server is down or refuses us.
fn session(e: &Broke, at: &str) -> Outcome {
    let detail = format!("{at}: {e}");
    match (e.code(), e) {
        (Some(421 | 451), _) => Outcome::RetryAfter(PAUSE, detail),
        (Some(c), _) if c >= 500 => Outcome::Credentials(detail),
        (_, Broke::Smtp(e)) if e.is_tls() || tls_refused(e) => {
            Outcome::Credentials(format!("{detail} (a private CA goes in ca_file)"))
        }
        _ => Outcome::Unavailable(detail),
    }
}

/// Whether the TLS handshake failed (an unknown issuer, a wrong name), which lettre
/// reports as a connection error: a setting to fix, not a server to wait for.
fn tls_refused(e: &SmtpError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        if s.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_before_the_message_is_a_retry() {
        let silent = Broke::Timeout(Duration::from_secs(5));
        assert_eq!(silent.code(), None);
        assert!(matches!(reply(&silent, Stage::Rcpt), Outcome::Retry(m) if m.contains("RCPT: no answer within 5s")));
    }

    #[test]
    fn a_subject_is_one_line_and_not_too_long() {
        assert_eq!(subject_of("\n  AMBER ALERT:\tchild missing \nCall 911."), "AMBER ALERT: child missing");
        let long = "word ".repeat(100);
        let s = one_line(&long);
        assert!(s.chars().count() <= MAX_SUBJECT && s.ends_with('…'), "{s}");
        assert_eq!(one_line("a\r\nBcc: victim@example.com"), "a Bcc: victim@example.com", "no header injection");
    }

    #[test]
    fn the_image_goes_inline_in_html_and_attached_to_text() {
        let img = Image {
            bytes: bytes::Bytes::from_static(b"\x89PNG\r\n"),
            mime: "image/png".to_owned(),
            alt: "Sofia, 6, <brown hair>".to_owned(),
            url: None,
        };
        let html = body("AMBER ALERT", Some("<html><body><p>AMBER</p></body></html>"), std::slice::from_ref(&img))
            .expect("body");
        let out = String::from_utf8(html.formatted()).expect("utf8");
        assert!(out.contains("multipart/alternative") && out.contains("multipart/related"), "{out}");
        assert!(out.contains("Content-ID: <photo1>"), "{out}");
        assert!(out.contains("Content-Description: Sofia, 6, <brown hair>"), "{out}");
        let text_only = body("AMBER ALERT", None, &[img]).expect("body");
        let out = String::from_utf8(text_only.formatted()).expect("utf8");
        assert!(out.contains("multipart/mixed") && out.contains("attachment"), "{out}");
        assert!(out.contains("[Photo: Sofia, 6, <brown hair>]"), "{out}");
    }
}
