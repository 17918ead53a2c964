//! The media pipeline: an event's images, fetched safely, stripped and fitted to each
//! platform, with alt text; a text card where a channel needs an image and the alert has
//! none; the public media store for platforms that fetch images by URL.
//!
//! Nothing here is on the ingest path: the MQTT message is acknowledged without waiting
//! for an image. A channel worker asks for its delivery's images just before the request
//! ([`MediaService::for_delivery`]); the first to ask for an event starts one fetch of its
//! images, which every channel shares and which goes on in the background if a worker
//! stops waiting. A critical alert waits at most `[media] critical_wait` (others `wait`),
//! then goes out without its image, and the record says why. Each original is kept in
//! the store (`media`), as fetched, for the audit trail; the per-platform versions are
//! derived from it and kept in memory for a while.

pub mod fetch;
pub mod public;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel;
use crate::config::{ChannelConfig, EventRule, MediaConfig};
use crate::event::{Event, Priority};
use crate::lifecycle::DeliveryKind;
use crate::metrics::{ImageLabel, Metrics};
use crate::reload::Shared;
use crate::store::{Job, MediaOp, Reader, Store};
use bullhorn_imaging::{Processed, Spec, decode, fit};

/// How long fetched images and their versions stay in memory.
const KEEP_IN_MEMORY: Duration = Duration::from_secs(15 * 60);
/// How often the public media store is cleaned up (more often for a short `keep`).
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// One of an event's images as fetched, or why there is none.
#[derive(Debug, Clone)]
struct Original {
    image: Result<(String, Bytes), String>,
    /// Its working copy, when the store has it already.
    work: Option<Bytes>,
}

/// A working copy being made or made, shared by whoever asks for it.
type Work = Arc<tokio::sync::OnceCell<Result<Bytes, String>>>;

type Originals = Arc<Vec<Original>>;

/// What a delivery posts with its text.
#[derive(Debug, Default)]
pub struct Attached {
    pub media: Vec<channel::Image>,
    /// What the record should say (posted without its image, and why; a text card).
    pub note: Option<String>,
}

/// A processed version, by (event, image, platform, size limit).
type VariantKey = (i64, usize, &'static str, usize);
/// A fetch under way or done, shared by whoever asks, with when it started.
type Fetching = (Instant, watch::Receiver<Option<Originals>>);
/// A processed version (or why there is none), with when it was made.
type Variant = (Instant, Result<Arc<Processed>, String>);

#[derive(Debug)]
pub struct MediaService {
    cfg: MediaConfig,
    fetcher: fetch::Fetcher,
    store: Store,
    reader: Reader,
    live: Shared,
    public: Option<public::PublicStore>,
    /// Fetches under way or done, by event id.
    originals: Mutex<HashMap<i64, Fetching>>,
    variants: Mutex<HashMap<VariantKey, Variant>>,
    /// Working copies, by (event, image): an original is decoded once for every platform.
    works: Mutex<HashMap<(i64, usize), (Instant, Work)>>,
    /// Decoding and processing take one permit each, so a burst of huge images on many
    /// channels decodes one at a time instead of all at once.
    decoding: Arc<tokio::sync::Semaphore>,
    /// Published URLs, by variant, so a retry does not publish again.
    urls: Mutex<HashMap<VariantKey, String>>,
    /// Shutdown: fetches still running stop (unrecorded, they start again on restart), so
    /// a hanging image server does not hold the store open.
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
}

impl MediaService {
    pub fn new(
        cfg: MediaConfig,
        store: Store,
        reader: Reader,
        live: Shared,
        http: reqwest::Client,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<MediaService>, String> {
        let policy = fetch::Policy { allow: cfg.allow.clone(), allow_private: cfg.allow_private.clone() };
        let fetcher = fetch::Fetcher::new(policy, cfg.max_bytes, cfg.timeout)?;
        let public = cfg.public.clone().map(|p| public::PublicStore::new(p, http));
        Ok(Arc::new(MediaService {
            cfg,
            fetcher,
            store,
            reader,
            live,
            public,
            originals: Mutex::new(HashMap::new()),
            variants: Mutex::new(HashMap::new()),
            works: Mutex::new(HashMap::new()),
            decoding: Arc::new(tokio::sync::Semaphore::new(1)),
            urls: Mutex::new(HashMap::new()),
            cancel,
            metrics,
        }))
    }

    /// Start the public media store's cleanup (when there is one).
    pub fn start_cleanup(
        self: &Arc<Self>,
        cancel: CancellationToken,
        failed: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let public = self.public.clone()?;
        let me = Arc::clone(self);
        Some(crate::supervise::spawn("media cleanup".to_owned(), failed, async move {
            let every = CLEANUP_EVERY.min(public.keep() / 2).max(Duration::from_millis(500));
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => me.cleanup(&public).await,
                }
            }
        }))
    }

    /// Remove what was published longer ago than `keep`.
    pub async fn cleanup(&self, public: &public::PublicStore) {
        let cutoff = crate::time::now_ms() - crate::time::duration_ms(public.keep());
        let Ok(names) = self.reader.published_before(cutoff).await else { return };
        for name in names {
            match public.remove(&name).await {
                Ok(()) => {
                    if let Err(e) = self.store.media(MediaOp::Unpublished { name: name.clone() }).await {
                        tracing::warn!(%name, error = %e, "removed from the public media store, but cannot record it");
                    } else {
                        tracing::info!(%name, "removed from the public media store");
                    }
                }
                Err(e) => {
                    tracing::warn!(%name, error = %e, "cannot remove from the public media store; will try again")
                }
            }
        }
    }

    /// The images `job` posts on `channel`, waiting for them at most its priority's wait,
    /// less `spent` (what earlier, interrupted waits for them took).
    pub async fn for_delivery(self: &Arc<Self>, job: &Job, channel: &ChannelConfig, spent: Duration) -> Attached {
        if matches!(job.kind, DeliveryKind::Cancel | DeliveryKind::Retract) {
            return Attached::default();
        }
        let Some(spec) = channel.platform().image_spec(channel.image_max_bytes) else { return Attached::default() };
        let Ok(event) = serde_json::from_str::<Event>(&job.event_json) else { return Attached::default() };
        let mut notes = Vec::new();
        let mut media = Vec::new();
        if !event.media.is_empty() {
            let wait = if job.priority >= Priority::Critical { self.cfg.critical_wait } else { self.cfg.wait };
            // The wait covers fetching, processing and publishing: the work goes on in the
            // background when it runs out, for a retry and the other channels.
            let images = async {
                let originals = self.originals(job.event_id, &event).await;
                let mut out = Vec::with_capacity(originals.len());
                for (idx, original) in originals.iter().enumerate() {
                    out.push(self.attach(job, channel, &spec, &event, idx, original).await);
                }
                out
            };
            match tokio::time::timeout(wait.saturating_sub(spent), images).await {
                Ok(images) => {
                    for (idx, image) in images.into_iter().enumerate() {
                        match image {
                            Ok(m) => media.push(m),
                            Err(why) => notes.push(format!("image {} not posted: {why}", idx + 1)),
                        }
                    }
                }
                Err(_) => {
                    self.metrics.media_not_ready.inc();
                    notes.push(format!(
                        "posted without its image: not ready within {} (the work goes on for retries and other \
                         channels)",
                        humantime::format_duration(wait)
                    ));
                }
            }
        }
        if media.is_empty() && channel.card {
            match self.card(job, channel, &spec, &event).await {
                Ok(m) => {
                    media.push(m);
                    notes.push("posted a text card".to_owned());
                }
                Err(why) => notes.push(format!("no text card: {why}")),
            }
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        if let Some(n) = &note {
            tracing::info!(channel = %channel.name, delivery = job.delivery_id, note = %n, "media");
        }
        Attached { media, note }
    }

    /// The event's images: fetched once, shared by every channel.
    async fn originals(self: &Arc<Self>, event_id: i64, event: &Event) -> Originals {
        let mut rx = {
            let mut map = self.originals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, (at, _)| at.elapsed() < KEEP_IN_MEMORY);
            match map.get(&event_id) {
                Some((_, rx)) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(event_id, (Instant::now(), rx.clone()));
                    let me = Arc::clone(self);
                    let refs = event.media.clone();
                    // On its own task: a worker that stops waiting does not stop the fetch.
                    tokio::spawn(async move {
                        tokio::select! {
                            () = me.cancel.cancelled() => {}
                            originals = me.load(event_id, &refs) => {
                                let _ = tx.send(Some(Arc::new(originals)));
                            }
                        }
                    });
                    rx
                }
            }
        };
        let got = rx.wait_for(Option::is_some).await.ok().and_then(|v| v.clone());
        match got {
            Some(originals) => originals,
            // The fetch was stopped (shutdown) without a result: not "no images" but not
            // ready, which the caller's wait bounds.
            None => std::future::pending().await,
        }
    }

    /// The images as recorded, or fetched (and recorded) now.
    async fn load(&self, event_id: i64, refs: &[crate::event::Media]) -> Vec<Original> {
        let recorded = self.reader.media_originals(event_id).await.unwrap_or_default();
        let mut out = Vec::with_capacity(refs.len());
        for (idx, r) in refs.iter().enumerate() {
            if let Some(row) = recorded.iter().find(|row| row.idx == idx) {
                out.push(Original { image: row.image.clone(), work: row.work.clone() });
                continue;
            }
            let (source, image) = match (&r.url, &r.data) {
                (_, Some(data)) => ("inline".to_owned(), self.inline(data)),
                (Some(url), None) => {
                    let fetched =
                        self.fetcher.fetch(url).await.map(|(b, m)| (m.to_owned(), b)).map_err(|e| e.to_string());
                    (url.clone(), fetched)
                }
                (None, None) => ("none".to_owned(), Err("neither a URL nor data".to_owned())),
            };
            let outcome = if image.is_ok() { "taken" } else { "refused" };
            self.metrics.media_images.get_or_create(&ImageLabel { outcome }).inc();
            match &image {
                Ok((mime, bytes)) => {
                    tracing::info!(event = event_id, image = idx + 1, %mime, bytes = bytes.len(), "image taken")
                }
                Err(why) => {
                    tracing::warn!(event = event_id, image = idx + 1, %why, "image refused; the alert goes out without it")
                }
            }
            let op = MediaOp::Original { event_id, idx, source, image: image.clone() };
            if let Err(e) = self.store.media(op).await {
                tracing::warn!(event = event_id, error = %e, "cannot record the image");
            }
            out.push(Original { image, work: None });
        }
        out
    }

    fn inline(&self, data: &str) -> Result<(String, Bytes), String> {
        let compact: String = data.split_whitespace().collect();
        if compact.len() / 4 * 3 > self.cfg.max_bytes + 3 {
            return Err(format!("too large: over {} bytes", self.cfg.max_bytes));
        }
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| format!("not base64: {e}"))?;
        if bytes.len() > self.cfg.max_bytes {
            return Err(format!("too large: over {} bytes", self.cfg.max_bytes));
        }
        let mime = bullhorn_imaging::image_mime(&bytes).ok_or("not JPEG, PNG, WebP or GIF")?;
        Ok((mime.to_owned(), Bytes::from(bytes)))
    }

    /// Image `idx` ready for `channel`, with its alt text (and URL where needed).
    async fn attach(
        self: &Arc<Self>,
        job: &Job,
        channel: &ChannelConfig,
        spec: &Spec,
        event: &Event,
        idx: usize,
        original: &Original,
    ) -> Result<channel::Image, String> {
        original.image.as_ref().map_err(Clone::clone)?;
        let alt =
            event.media.get(idx).and_then(|m| m.alt.clone()).map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
        let alt = match alt {
            Some(a) => a,
            // Every public image has a description (accessibility; ADA Title II).
            None if channel.public => return Err("no alt text (in the event or an alt.txt template)".to_owned()),
            None => "Image attached to the alert (no description given)".to_owned(),
        };
        let key: VariantKey = (job.event_id, idx, channel.platform().as_str(), spec.max_bytes);
        let processed = self.variant(key, idx, original, *spec).await?;
        let url = if spec.by_url { Some(self.publish(key, job.event_id, &processed).await?) } else { None };
        Ok(channel::Image { bytes: Bytes::from(processed.bytes.clone()), mime: processed.mime.to_owned(), alt, url })
    }

    /// The version of an original for a spec, made once (and kept even when whoever
    /// asked stopped waiting).
    async fn variant(
        self: &Arc<Self>,
        key: VariantKey,
        idx: usize,
        original: &Original,
        spec: Spec,
    ) -> Result<Arc<Processed>, String> {
        {
            let mut map = self.variants.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, (at, _)| at.elapsed() < KEEP_IN_MEMORY);
            if let Some((_, v)) = map.get(&key) {
                return v.clone();
            }
        }
        let work = self.work(key.0, idx, original).await?;
        let permit = Arc::clone(&self.decoding).acquire_owned().await.map_err(|e| e.to_string())?;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = std::time::Instant::now();
            let made = decode(&work).and_then(|img| fit(&img, &spec)).map(Arc::new);
            me.metrics.media_processing_seconds.observe(started.elapsed().as_secs_f64());
            me.variants
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, (Instant::now(), made.clone()));
            made
        })
        .await
        .map_err(|e| format!("processing failed: {e}"))?
    }

    /// Image `idx` of `event_id` decoded once, upright and at most 4096 px: the working
    /// copy every platform's version is made from (see `bullhorn_imaging::working_copy`).
    /// Made once, by whoever asks first, one image at a time; recorded, so a restart does
    /// not decode the original again.
    async fn work(self: &Arc<Self>, event_id: i64, idx: usize, original: &Original) -> Result<Bytes, String> {
        if let Some(w) = &original.work {
            return Ok(w.clone());
        }
        let (_, bytes) = original.image.as_ref().map_err(Clone::clone)?;
        let cell = {
            let mut map = self.works.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, (at, _)| at.elapsed() < KEEP_IN_MEMORY);
            Arc::clone(&map.entry((event_id, idx)).or_insert_with(|| (Instant::now(), Work::default())).1)
        };
        let made = cell
            .get_or_init(|| async {
                let permit = Arc::clone(&self.decoding).acquire_owned().await.map_err(|e| e.to_string())?;
                let bytes = bytes.clone();
                let work = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    bullhorn_imaging::working_copy(&bytes)
                })
                .await
                .map_err(|e| format!("decoding failed: {e}"))??;
                let work = Bytes::from(work);
                self.metrics.media_work_copies.inc();
                let op = MediaOp::Work { event_id, idx, bytes: work.clone() };
                if let Err(e) = self.store.media(op).await {
                    tracing::warn!(event = event_id, error = %e, "cannot record the image's working copy");
                }
                Ok(work)
            })
            .await;
        made.clone()
    }

    /// Put a version in the public media store (once) and return its URL.
    async fn publish(&self, key: VariantKey, event_id: i64, p: &Processed) -> Result<String, String> {
        if let Some(url) = self.urls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(url.clone());
        }
        let public = self.public.as_ref().ok_or("this platform takes images by URL and [media.public] is not set")?;
        // Unguessable: a published photo cannot be found by trying names.
        let name = format!("{}.jpg", crate::digest::random_token()?);
        let url = public.publish(&name, Bytes::from(p.bytes.clone()), p.mime).await?;
        if let Err(e) = self.store.media(MediaOp::Published { name: name.clone(), url: url.clone(), event_id }).await {
            // Not recorded means never cleaned up: take it down again.
            let _ = public.remove(&name).await;
            return Err(format!("cannot record the published image: {e}"));
        }
        tracing::info!(%url, event = event_id, "image published for platforms that fetch by URL");
        self.urls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, url.clone());
        Ok(url)
    }

    /// A text card of the alert for `channel`.
    async fn card(
        &self,
        job: &Job,
        channel: &ChannelConfig,
        spec: &Spec,
        event: &Event,
    ) -> Result<channel::Image, String> {
        let live = self.live.load();
        let fallback;
        let rule = match live.config.events.get(&job.event_type) {
            Some(r) => r,
            None => {
                fallback = EventRule::new(job.priority, crate::config::ChannelSelector::All, &job.event_type);
                &fallback
            }
        };
        let (title, body) = live.renderer.card_text(rule, event)?;
        let agency = &live.config.agency;
        let footer = match &agency.phone {
            Some(phone) => format!("{} · {phone}", agency.name),
            None => agency.name.clone(),
        };
        let alt = std::iter::once(title.clone()).chain(body.iter().cloned()).collect::<Vec<_>>().join(". ");
        let spec2 = *spec;
        let processed = tokio::task::spawn_blocking(move || {
            bullhorn_imaging::card::render(&title, &body, &footer)
                .and_then(|img| fit(&bullhorn_imaging::DynamicImage::ImageRgb8(img), &spec2))
        })
        .await
        .map_err(|e| format!("card failed: {e}"))??;
        let key: VariantKey = (job.event_id, usize::MAX, channel.platform().as_str(), spec.max_bytes);
        let url = if spec.by_url { Some(self.publish(key, job.event_id, &processed).await?) } else { None };
        Ok(channel::Image { bytes: Bytes::from(processed.bytes), mime: processed.mime.to_owned(), alt, url })
    }
}
