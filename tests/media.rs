//! The media pipeline over real HTTP: the allowlisted fetch against a real image server
//! on loopback, the AMBER photo to every platform that takes images (fitted, stripped of
//! EXIF/GPS, with alt text; Bluesky on the reference PDS), the text card for Instagram,
//! the public media store in a directory and in an S3-compatible bucket (SigV4 checked),
//! an inline CAP image from a real IPAWS alert, and a critical alert that does not wait
//! for an image that never comes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse as _, Response};
use bullhorn::config::Origin;
use bullhorn::media::fetch::{FetchError, Fetcher, Policy};
use bullhorn_imaging::testing::{exif_of, has_gps, photo_with_gps};

use super::support::admin::Api;
use super::support::pds::Pds;
use super::support::platforms::{self, Server, block};
use super::support::{admin_get, count, embedded_broker, eventually, s3, send_raw, start_app, write_config};

const WAIT: Duration = Duration::from_secs(60);
const ALT: &str = "Photo of Sofia Ramirez, 6, the missing child";
const PUBLIC_BASE: &str = "https://media.sheriff.example/alerts";

/// A web server with images and the ways an image URL goes wrong.
#[derive(Debug, Default)]
struct Images {
    photo: Vec<u8>,
    /// Where `/out` redirects to.
    elsewhere: Mutex<String>,
    hits: Mutex<Vec<String>>,
    /// Requests for `/hang.jpg` the client gave up on.
    abandoned: std::sync::atomic::AtomicUsize,
}

/// Counts a request as abandoned when its handler is dropped before answering.
struct Abandoned<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    answered: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Images {
    fn hits(&self) -> Vec<String> {
        self.hits.lock().expect("hits").clone()
    }
}

async fn images(photo: Vec<u8>) -> (Server, Arc<Images>) {
    let state = Arc::new(Images { photo, ..Images::default() });
    let router = Router::new().fallback(serve_image).with_state(Arc::clone(&state));
    (platforms::serve(router).await, state)
}

async fn serve_image(State(s): State<Arc<Images>>, uri: Uri) -> Response {
    s.hits.lock().expect("hits").push(uri.path().to_owned());
    let with_type = |ct: &str, body: Body| {
        let mut r = body.into_response();
        r.headers_mut().insert("content-type", ct.parse().expect("ct"));
        r
    };
    match uri.path() {
        "/amber/sofia.jpg" => with_type("image/jpeg", Body::from(s.photo.clone())),
        "/in" => redirect("/amber/sofia.jpg"),
        "/out" => redirect(&s.elsewhere.lock().expect("elsewhere")),
        "/big.jpg" => {
            let mut big = s.photo.clone();
            big.resize(3 * 1024 * 1024, 0);
            with_type("image/jpeg", Body::from(big))
        }
        "/streamed.jpg" => {
            // No Content-Length: the cap must hold while reading.
            let chunk = Bytes::from(vec![0xffu8; 64 * 1024]);
            let chunks = (0..48).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
            with_type("image/jpeg", Body::from_stream(futures_util::stream::iter(chunks)))
        }
        "/page.html" => with_type("text/html; charset=utf-8", Body::from("<html>not a photo</html>")),
        "/disguised.jpg" => with_type("image/jpeg", Body::from("<svg xmlns=\"http://www.w3.org/2000/svg\"/>")),
        "/hang.jpg" => {
            let mut guard = Abandoned { count: &s.abandoned, answered: false };
            tokio::time::sleep(Duration::from_secs(120)).await;
            guard.answered = true;
            with_type("image/jpeg", Body::from(s.photo.clone()))
        }
        _ => (axum::http::StatusCode::NOT_FOUND, "no such image").into_response(),
    }
}

fn redirect(to: &str) -> Response {
    let mut r = (axum::http::StatusCode::FOUND, "").into_response();
    r.headers_mut().insert("location", to.parse().expect("location"));
    r
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

fn fetcher(allow: &[String], private: &[&str], max_bytes: usize) -> Fetcher {
    let policy = Policy {
        allow: allow.iter().map(|o| Origin::parse(o).expect("origin")).collect(),
        allow_private: private.iter().map(|n| n.parse().expect("network")).collect(),
    };
    Fetcher::new(policy, max_bytes, Duration::from_secs(5)).expect("fetcher")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetch_takes_only_allowlisted_images_within_the_limits() {
    let (srv, img) = images(photo_with_gps(64, 48)).await;
    let (other, other_img) = images(photo_with_gps(64, 48)).await;
    *img.elsewhere.lock().expect("elsewhere") = format!("{}/amber/sofia.jpg", other.url);
    let f = fetcher(std::slice::from_ref(&srv.url), &[], 1024 * 1024);

    let (bytes, mime) = f.fetch(&format!("{}/amber/sofia.jpg", srv.url)).await.expect("an allowed image");
    assert_eq!((bytes.len(), mime), (img.photo.len(), "image/jpeg"));
    assert!(f.fetch(&format!("{}/in", srv.url)).await.is_ok(), "a redirect within the allowlist is followed");

    // Off the allowlist: refused before any connection.
    let off = f.fetch(&format!("{}/amber/sofia.jpg", other.url)).await;
    assert!(matches!(&off, Err(FetchError::Refused(w)) if w.contains("not on [media] allow")), "{off:?}");
    // A redirect to a host off the list: refused, and that host never hears of it.
    let out = f.fetch(&format!("{}/out", srv.url)).await;
    assert!(matches!(&out, Err(FetchError::Refused(w)) if w.contains("redirect refused")), "{out:?}");
    assert!(other_img.hits().is_empty(), "nothing reached the host off the list: {:?}", other_img.hits());

    // A host name that resolves to loopback: refused even when allowlisted by name...
    let by_name = vec![format!("http://localhost:{}", port_of(&srv.url))];
    let url = format!("http://localhost:{}/amber/sofia.jpg", port_of(&srv.url));
    let before = img.hits().len();
    let private = fetcher(&by_name, &[], 1024 * 1024).fetch(&url).await;
    assert!(matches!(&private, Err(FetchError::Refused(w)) if w.contains("not a public address")), "{private:?}");
    assert_eq!(img.hits().len(), before, "no connection was made");
    // ...unless its network is allowed.
    assert!(fetcher(&by_name, &["127.0.0.0/8", "::1/128"], 1024 * 1024).fetch(&url).await.is_ok());

    // Too large, declared or streamed; not an image by its type or by its bytes.
    let big = f.fetch(&format!("{}/big.jpg", srv.url)).await;
    assert_eq!(big, Err(FetchError::TooLarge(1024 * 1024)));
    let streamed = f.fetch(&format!("{}/streamed.jpg", srv.url)).await;
    assert_eq!(streamed, Err(FetchError::TooLarge(1024 * 1024)));
    let html = f.fetch(&format!("{}/page.html", srv.url)).await;
    assert!(matches!(&html, Err(FetchError::NotAnImage(w)) if w.contains("text/html")), "{html:?}");
    let svg = f.fetch(&format!("{}/disguised.jpg", srv.url)).await;
    assert!(matches!(svg, Err(FetchError::NotAnImage(_))), "the bytes decide, not the header");
    let missing = f.fetch(&format!("{}/nope.jpg", srv.url)).await;
    assert!(matches!(&missing, Err(FetchError::Failed(w)) if w.contains("404")), "{missing:?}");
    for bad in ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "not a url"] {
        assert!(matches!(f.fetch(bad).await, Err(FetchError::Refused(_))), "{bad}");
    }
}

/// A processed image: a JPEG within `max` bytes, with no EXIF (so no GPS) left.
fn assert_stripped(what: &str, bytes: &[u8], max: usize) -> (u32, u32) {
    assert_eq!(bullhorn_imaging::image_mime(bytes), Some("image/jpeg"), "{what}: a JPEG");
    assert!(bytes.len() <= max, "{what}: {} bytes > {max}", bytes.len());
    assert_eq!(exif_of(bytes), None, "{what}: EXIF stripped");
    assert!(!has_gps(bytes), "{what}: no GPS");
    bullhorn_imaging::dimensions(bytes).unwrap_or_else(|| panic!("{what}: decodes"))
}

/// The file a public URL points at in the public directory.
fn published(dir: &Path, url: &str) -> Vec<u8> {
    let name = url.strip_prefix(&format!("{PUBLIC_BASE}/")).unwrap_or_else(|| panic!("{url} is not public"));
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn amber(id: &str, media: serde_json::Value) -> String {
    serde_json::json!({
        "id": id, "revision": 1, "type": "missing_child", "status": "actual",
        "headline": "AMBER ALERT: Sofia Ramirez, 6, missing from Lakeview Park",
        "fields": { "child_name": "Sofia Ramirez", "child_age": 6 },
        "media": media,
    })
    .to_string()
}

fn write_alt_template(dir: &Path) {
    let set = dir.join("templates/missing_child");
    std::fs::create_dir_all(&set).expect("set");
    std::fs::write(set.join("alt.txt"), "Photo of {{ child_name }}, {{ child_age }}, the missing child").expect("alt");
}

async fn all_done(db: &Path, n: i64) {
    let done = eventually(WAIT, || {
        // All first: counted the other way round, "none open" could be read before the
        // deliveries were committed at all.
        let all = count(db, "SELECT COUNT(*) FROM deliveries");
        let open = count(db, "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'in_flight', 'held')");
        (all == n && open == 0).then_some(())
    })
    .await;
    assert!(done.is_some(), "every delivery finished");
}

/// Each channel's delivery: its state and what the record says (a sent delivery's notes).
fn notes(db: &Path) -> BTreeMap<String, (String, String)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    let mut stmt = conn.prepare("SELECT channel, state, COALESCE(reason, '') FROM deliveries").expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amber_photo_reaches_every_platform_fitted_stripped_and_described() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = dir.path().join("public");
    // A photo of noise (hard to compress), with GPS in its EXIF and
    // orientation 6: over Bluesky's 1 MB as it is.
    let photo = photo_with_gps(1600, 1200);
    assert!(has_gps(&photo) && photo.len() > 1_000_000, "{} bytes", photo.len());
    let (img_srv, img) = images(photo).await;
    let pds = tokio::task::spawn_blocking(|| Pds::start(false)).await.expect("pds");
    let fleet = platforms::Fleet::start().await;
    let (masto, x, meta, tg, dc) = (&fleet.masto, &fleet.x, &fleet.meta, &fleet.tg, &fleet.discord);
    let (slack, teams, nd, sms) = (&fleet.slack, &fleet.teams, &fleet.nd, &fleet.sms);
    let bsky = format!(
        "kind = \"bluesky\"\nbase_url = \"{}\"\nidentifier = \"{}\"\napp_password = \"{}\"",
        pds.url, pds.handle, pds.password
    );
    let channels = format!("{}{}", fleet.channels, block("bsky", &bsky));
    // Generous waits: this test is about what arrives, not how fast.
    let media = format!(
        "[media]\nallow = [\"{}\"]\ncritical_wait = \"45s\"\n[media.public]\ndir = \"{}\"\nbase_url = \"{PUBLIC_BASE}\"\n",
        img_srv.url,
        public.display()
    );
    let config = write_config(dir.path(), "", &format!("{}\n{media}\n{channels}", embedded_broker()));
    write_alt_template(dir.path());
    let app = start_app(&config).await;
    let url = format!("{}/amber/sofia.jpg", img_srv.url);
    // No alt text in the event: the set's alt.txt gives it.
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-7", serde_json::json!([{ "url": url }]))).await;
    let db = dir.path().join("bullhorn.db");
    all_done(&db, 12).await;
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;
    assert!(metrics.contains("bullhorn_media_images_total{outcome=\"taken\"} 1\n"), "taken once: {metrics}");
    assert!(!metrics.contains("bullhorn_media_processing_seconds_count 0\n"), "{metrics}");

    let notes = notes(&db);
    for (channel, (state, note)) in &notes {
        assert_eq!(state, "sent", "{channel}: {note}");
        assert!(!note.contains("image"), "{channel} posted its image: {note}");
    }
    assert_eq!(img.hits(), ["/amber/sofia.jpg"], "fetched once for every channel");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM media WHERE mime = 'image/jpeg' AND length(bytes) > 1000000 AND error IS NULL"
        ),
        1,
        "the original, as fetched, is kept for the audit trail"
    );

    // Uploaded bytes, each within its platform's limit, stripped.
    let part = |hits: Vec<platforms::Hit>, field: &str| -> Vec<u8> {
        let hit = hits.first().unwrap_or_else(|| panic!("no upload with {field}"));
        hit.multipart_fields().remove(field).unwrap_or_else(|| panic!("no {field}"))
    };
    let (w, h) = assert_stripped("x", &part(x.common.hits_to("POST", "/2/media/upload"), "media"), 5_000_000);
    assert!(h > w, "turned upright by its EXIF orientation: {w}x{h}");
    assert_eq!(x.live()[0].media.len(), 1);
    assert_eq!(x.media.lock().expect("media").values().next().cloned().flatten().as_deref(), Some(ALT));
    let masto_upload = masto.common.hits_to("POST", "/api/v2/media");
    assert_stripped("mastodon", &part(masto_upload.clone(), "file"), 8_000_000);
    assert_eq!(masto_upload[0].multipart_fields()["description"], ALT.as_bytes());
    assert_eq!(masto.live()[0].media.len(), 1);
    assert_stripped("facebook", &part(meta.common.hits_to("POST", "/photos"), "source"), 4_000_000);
    assert_eq!(meta.live("feed")[0].alt.as_deref(), Some(ALT));
    assert_stripped("telegram", &part(tg.common.hits_to("POST", "sendPhoto"), "photo"), 10_000_000);
    assert!(tg.live()[0].photo);
    assert_stripped("discord", &part(dc.common.hits_to("POST", "/api/webhooks"), "files[0]"), 8_000_000);
    assert_eq!(dc.live()[0].attachment_description.as_deref(), Some(ALT));

    // Bluesky: the reference PDS took the blob against the lexicon's 1,000,000 bytes.
    let (_, list) =
        pds.query("com.atproto.repo.listRecords", &[("repo", &pds.did), ("collection", "app.bsky.feed.post")]).await;
    let image = &list["records"][0]["value"]["embed"]["images"][0];
    assert_eq!(image["alt"], ALT, "{list}");
    let cid = image["image"]["ref"]["$link"].as_str().expect("blob cid").to_owned();
    let client = bullhorn::channel::http::client().expect("client");
    let blob = client
        .get(format!("{}/xrpc/com.atproto.sync.getBlob", pds.url))
        .query(&[("did", pds.did.as_str()), ("cid", cid.as_str())])
        .send()
        .await
        .expect("getBlob")
        .bytes()
        .await
        .expect("blob");
    assert_stripped("bluesky", &blob, 1_000_000);

    // By URL, from the public media store.
    let ig = meta.live("ig_media");
    let (w, h) = assert_stripped("instagram", &published(&public, ig[0].image.as_deref().expect("url")), 8_000_000);
    assert!(w <= 1440 && (0.8..=1.91).contains(&(w as f32 / h as f32)), "Instagram's limits: {w}x{h}");
    assert_eq!(ig[0].alt.as_deref(), Some(ALT));
    let th = meta.live("thread");
    assert_stripped("threads", &published(&public, th[0].image.as_deref().expect("url")), 8_000_000);
    assert_eq!(th[0].alt.as_deref(), Some(ALT));
    let s = slack.live();
    assert_stripped("slack", &published(&public, s[0].attachments[0]["image_url"].as_str().expect("url")), 5_000_000);
    assert_eq!(s[0].attachments[0]["fallback"], ALT);
    let card = teams.cards.lock().expect("cards")[0].to_string();
    let teams_url = card.split(PUBLIC_BASE).nth(1).and_then(|r| r.split('"').next()).expect("an image in the card");
    assert_stripped("teams", &published(&public, &format!("{PUBLIC_BASE}{teams_url}")), 5_000_000);
    assert!(card.contains(ALT), "{card}");
    let nd_url = nd.posts.lock().expect("posts")[0].media[0].clone();
    assert_stripped("nextdoor", &published(&public, &nd_url), 5_000_000);
    let mms = sms.messages.lock().expect("messages")[0].media.clone().expect("MediaUrl");
    assert_stripped("sms", &published(&public, &mms), 600_000);
    for f in std::fs::read_dir(&public).expect("public dir") {
        let f = f.expect("entry");
        let mode = std::os::unix::fs::PermissionsExt::mode(&f.metadata().expect("meta").permissions());
        assert_eq!(mode & 0o777, 0o644, "readable by the web server");
        let name = f.file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".jpg") && name.len() >= 40, "an unguessable name: {name}");
    }
    assert!(
        count(&db, "SELECT COUNT(*) FROM published WHERE removed_at IS NULL") >= 6,
        "every published file is recorded for the cleanup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_gets_a_text_card_and_the_public_store_is_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = dir.path().join("public");
    let (meta_srv, meta) = platforms::meta::start().await;
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[agency]\nname = \"Ruiz County Sheriff's Office\"\nphone = \"361-555-0100\"\n\
             [media.public]\ndir = \"{}\"\nbase_url = \"{PUBLIC_BASE}\"\nkeep = \"2s\"\n{}",
            embedded_broker(),
            public.display(),
            block(
                "ig",
                &format!(
                    "kind = \"instagram\"\nbase_url = \"{}/v23.0\"\nuser_id = \"{}\"\naccess_token = \"{}\"",
                    meta_srv.url,
                    platforms::meta::IG,
                    platforms::meta::TOKEN
                )
            )
        ),
    );
    let app = start_app(&config).await;
    // A text-only alert.
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-8", serde_json::json!([]))).await;
    let db = dir.path().join("bullhorn.db");
    all_done(&db, 1).await;
    let (state, note) = notes(&db).remove("ig").expect("ig");
    assert_eq!(state, "sent", "{note}");
    assert!(note.contains("text card"), "the record says a card was posted: {note}");
    let post = meta.live("ig_media").remove(0);
    assert!(post.alt.as_deref().is_some_and(|a| a.contains("Sofia Ramirez")), "the card's text is its alt: {post:?}");
    let card = published(&public, post.image.as_deref().expect("image url"));
    assert_eq!(assert_stripped("card", &card, 8_000_000), (1080, 1080), "a square card");
    let img = bullhorn_imaging::decode(&card).expect("decode").to_rgb8();
    let red = img.get_pixel(10, 10).0;
    assert!(red[0] > 150 && red[1] < 60 && red[2] < 80, "a red headline band: {red:?}");
    let yellow = img.get_pixel(10, 1075).0;
    assert!(yellow[0] > 200 && yellow[1] > 170 && yellow[2] < 60, "a yellow agency band: {yellow:?}");
    let light = img.pixels().filter(|p| p.0.iter().all(|c| *c > 200)).count();
    assert!(light > 5_000, "text is drawn: {light} light pixels");

    // After `keep`, the cleanup takes it down and records that.
    let removed = eventually(Duration::from_secs(20), || {
        (count(&db, "SELECT COUNT(*) FROM published WHERE removed_at IS NOT NULL") == 1).then_some(())
    })
    .await;
    app.stop().await;
    assert!(removed.is_some(), "the published card was removed");
    assert_eq!(std::fs::read_dir(&public).expect("dir").count(), 0, "the directory is empty again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_gets_signed_uploads_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3_srv, bucket) = s3::start().await;
    let (img_srv, _img) = images(photo_with_gps(1200, 900)).await;
    let (meta_srv, meta) = platforms::meta::start().await;
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, s3::SECRET_KEY).expect("secret");
    let base_url = format!("{}/{}", s3_srv.url, s3::BUCKET);
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[media]\nallow = [\"{}\"]\ncritical_wait = \"45s\"\n[media.public]\ns3_endpoint = \"{}\"\nbucket = \"{}\"\n\
             region = \"{}\"\naccess_key = \"{}\"\nsecret_key_file = \"{}\"\nbase_url = \"{base_url}\"\nkeep = \"2s\"\n{}",
            embedded_broker(),
            img_srv.url,
            s3_srv.url,
            s3::BUCKET,
            s3::REGION,
            s3::ACCESS_KEY,
            secret.display(),
            block(
                "threads",
                &format!(
                    "kind = \"threads\"\nbase_url = \"{}/v1.0\"\nuser_id = \"{}\"\naccess_token = \"{}\"",
                    meta_srv.url,
                    platforms::meta::THREADS,
                    platforms::meta::TOKEN
                )
            )
        ),
    );
    write_alt_template(dir.path());
    let app = start_app(&config).await;
    let url = format!("{}/amber/sofia.jpg", img_srv.url);
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-9", serde_json::json!([{ "url": url }]))).await;
    let db = dir.path().join("bullhorn.db");
    all_done(&db, 1).await;
    let (state, note) = notes(&db).remove("threads").expect("threads");
    assert_eq!(state, "sent", "{note}");
    let post = meta.live("thread").remove(0);
    let image_url = post.image.clone().expect("image url");
    assert!(image_url.starts_with(&format!("{base_url}/")), "{image_url}");
    // What the platform would fetch: the bucket serves it publicly.
    let client = bullhorn::channel::http::client().expect("client");
    let r = client.get(&image_url).send().await.expect("get");
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_stripped("threads via S3", &r.bytes().await.expect("bytes"), 8_000_000);
    let puts = bucket.common.hits_to("PUT", "/");
    assert_eq!(puts.len(), 1, "one signed upload");
    assert!(puts[0].query.contains("X-Amz-Signature="), "{}", puts[0].query);
    assert!(!puts[0].query.contains(s3::SECRET_KEY), "the secret is never sent");

    // The cleanup deletes it, signed too.
    let deleted =
        eventually(Duration::from_secs(20), || (!bucket.deleted.lock().expect("deleted").is_empty()).then_some(()))
            .await;
    app.stop().await;
    assert!(deleted.is_some(), "the object was deleted after keep");
    assert!(bucket.objects.lock().expect("objects").is_empty());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM published WHERE removed_at IS NOT NULL"), 1);
    let writes = bucket.common.hits().iter().filter(|h| h.method != "GET").count();
    assert_eq!(writes, 2, "exactly one PUT and one DELETE reached the bucket");
}

/// A daemon config with one Mastodon channel and an image server whose `/hang.jpg` never
/// answers in time; `waits` goes in `[media]`.
async fn slow_image_setup(
    dir: &Path,
    waits: &str,
) -> (std::path::PathBuf, (Server, Arc<Images>), (Server, Arc<platforms::mastodon::Fake>)) {
    let (img_srv, img) = images(photo_with_gps(64, 48)).await;
    let (masto_srv, masto) = platforms::mastodon::start().await;
    let masto_cfg = format!(
        "kind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"",
        masto_srv.url,
        platforms::mastodon::TOKEN
    );
    let body = format!(
        "{}\n[media]\nallow = [\"{}\"]\ntimeout = \"100s\"\n{waits}\n{}",
        embedded_broker(),
        img_srv.url,
        block("masto", &masto_cfg)
    );
    let config = write_config(dir, "", &body);
    write_alt_template(dir);
    (config, (img_srv, img), (masto_srv, masto))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alert_waits_for_an_image_no_longer_than_critical_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, (img_srv, img), (_masto_srv, masto)) = slow_image_setup(dir.path(), "critical_wait = \"2s\"").await;
    let app = start_app(&config).await;
    let url = format!("{}/hang.jpg", img_srv.url);
    let sent = std::time::Instant::now();
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-10", serde_json::json!([{ "url": url }]))).await;
    let db = dir.path().join("bullhorn.db");
    all_done(&db, 1).await;
    let waited = sent.elapsed();
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;
    assert!(metrics.contains("bullhorn_media_not_ready_total 1\n"), "{metrics}");
    // The image server is still holding the request (it answers after 120 s; the fetch
    // timeout is 100 s): the alert went out without waiting for it.
    assert_eq!(img.hits(), ["/hang.jpg"]);
    assert!(waited < Duration::from_secs(60), "posted while the image still hung: {waited:?}");
    let (state, note) = notes(&db).remove("masto").expect("masto");
    assert_eq!(state, "sent");
    assert!(note.contains("posted without its image: not ready within 2s"), "the record says why: {note}");
    assert!(masto.live()[0].media.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retraction_and_the_kill_switch_do_not_wait_behind_an_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, (img_srv, img), (_masto_srv, masto)) =
        slow_image_setup(dir.path(), "critical_wait = \"8s\"\nwait = \"8s\"").await;
    let app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    let db = dir.path().join("bullhorn.db");
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-20", serde_json::json!([]))).await;
    let first = eventually(WAIT, || masto.live().first().cloned()).await.expect("the first alert is posted");

    // The second alert's image hangs: the worker waits for it (8 s at most).
    let url = format!("{}/hang.jpg", img_srv.url);
    let sent = std::time::Instant::now();
    send_raw(&config, "cad/county/events", amber("RCSO-AMBER-21", serde_json::json!([{ "url": url }]))).await;
    eventually(WAIT, || (img.hits() == ["/hang.jpg"]).then_some(())).await.expect("the image is being fetched");

    // A retraction of the first goes out now, not after that wait.
    let (status, done) = api.post("/api/alerts/RCSO-AMBER-20/retract", serde_json::json!({ "actor": "pio" })).await;
    assert_eq!(status, 200, "{done}");
    eventually(WAIT, || masto.all().iter().any(|s| s.in_reply_to_id.as_ref() == Some(&first.id)).then_some(()))
        .await
        .expect("the retraction is posted");
    assert!(sent.elapsed() < Duration::from_secs(8), "the retraction did not wait for the image: {:?}", sent.elapsed());
    assert!(masto.live().iter().all(|s| s.id != first.id), "the retracted alert is deleted");
    assert_eq!(masto.all().len(), 2, "the second alert still waits for its image");

    // The kill switch during the wait: nothing goes out while paused (had the worker gone
    // on waiting, the alert would go out when its 8 s were up). Time paused is not time
    // waited: after the resume it waits what is left of its 8 s.
    let (status, _) = api.post("/api/pause", serde_json::json!({ "actor": "pio" })).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(sent.elapsed())).await;
    assert_eq!(masto.all().len(), 2, "paused: the second alert is not posted");
    let (status, _) = api.post("/api/resume", serde_json::json!({ "actor": "pio" })).await;
    assert_eq!(status, 200);
    all_done(&db, 3).await;
    assert_eq!(img.abandoned.load(std::sync::atomic::Ordering::SeqCst), 0, "the fetch goes on after the wait");
    app.stop().await;
    // The fetch stops with the daemon (it would otherwise hold the store open for 100 s).
    let dropped = eventually(WAIT, || (img.abandoned.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(()));
    assert!(dropped.await.is_some(), "the hanging fetch was given up at shutdown");
    let all = masto.all();
    assert_eq!(all.len(), 3);
    assert!(all[2].text.contains("Sofia Ramirez") && all[2].media.is_empty(), "{:?}", all[2]);
    let note: String = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row(
            "SELECT d.reason FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.incident_key = 'json:RCSO-AMBER-21'",
            [],
            |r| r.get(0),
        )
        .expect("the second alert's delivery");
    assert!(note.contains("posted without its image: not ready within 8s"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_image_in_a_real_ipaws_alert_is_decoded_and_stripped() {
    let corpus = std::env::var("BULLHORN_CORPUS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus").to_owned());
    let xml = std::fs::read_to_string(Path::new(&corpus).join("ipaws-montgomery-md-police-suspicious-person-lae.xml"))
        .expect("the shared corpus (BULLHORN_CORPUS)");
    // The real alert carries a JPEG with an EXIF block inline (base64 derefUri). Its 2019
    // times are moved to now so it is not expired.
    let original = xml.split("<derefUri>").nth(1).and_then(|r| r.split("</derefUri>").next()).expect("derefUri");
    let jpeg = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        original.split_whitespace().collect::<String>(),
    )
    .expect("base64");
    assert!(exif_of(&jpeg).is_some(), "the input has EXIF");
    let now = jiff::Timestamp::now();
    let xml = xml.replace("2019-12-13T13:24:50-08:00", &now.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()).replace(
        "2019-12-13T14:24:50-08:00",
        &(now + jiff::SignedDuration::from_hours(1)).strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = platforms::mastodon::start().await;
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[[mqtt.subscribe]]\ntopic = \"ipaws/cap\"\nformat = \"cap\"\n[events.general]\npriority = \"high\"\n{}",
            embedded_broker(),
            block(
                "masto",
                &format!(
                    "kind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"",
                    masto_srv.url,
                    platforms::mastodon::TOKEN
                )
            )
        ),
    );
    let app = start_app(&config).await;
    send_raw(&config, "ipaws/cap", xml).await;
    let db = dir.path().join("bullhorn.db");
    all_done(&db, 1).await;
    app.stop().await;
    let (state, note) = notes(&db).remove("masto").expect("masto");
    assert_eq!(state, "sent", "{note}");
    let upload = masto.common.hits_to("POST", "/api/v2/media");
    let fields = upload.first().expect("an upload").multipart_fields();
    let (w, h) = assert_stripped("inline CAP image", &fields["file"], 8_000_000);
    assert_eq!(Some((w, h)), bullhorn_imaging::dimensions(&jpeg), "the same picture");
    assert_eq!(fields["description"], b"A broadcast resource", "the CAP resourceDesc is its alt text");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM media WHERE source = 'inline' AND bytes IS NOT NULL"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_image_on_many_channels_is_decoded_once_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 6,000 × 4,500 pixels: a small file, 81 MB once decoded.
    let png = bullhorn_imaging::testing::flat_png(6000, 4500);
    assert!(png.len() < 1_000_000, "{} bytes", png.len());
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png);
    let (masto_srv, masto) = platforms::mastodon::start().await;
    let channel = |name: &str| {
        block(
            name,
            &format!(
                "kind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"",
                masto_srv.url,
                platforms::mastodon::TOKEN
            ),
        )
    };
    let channels = format!("{}{}{}{}", channel("m1"), channel("m2"), channel("m3"), channel("late"));
    let config = write_config(
        dir.path(),
        "max_payload_bytes = 2000000\nmax_packet_bytes = 2100000",
        // Generous waits: this test is about what is decoded, not how fast.
        &format!("{}\n[media]\ncritical_wait = \"60s\"\n{channels}", embedded_broker()),
    );
    write_alt_template(dir.path());
    let app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    // One channel waits behind a pause, through a restart.
    let (status, _) = api.post("/api/pause", serde_json::json!({ "scope": "channel:late" })).await;
    assert_eq!(status, 200);
    send_raw(&config, "cad/county/events", amber("HUGE-1", serde_json::json!([{ "data": data }]))).await;
    let db = dir.path().join("bullhorn.db");
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") == 3).then_some(()))
        .await
        .expect("three channels posted");
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;
    assert!(metrics.contains("bullhorn_media_work_copies_total 1\n"), "decoded once for three channels: {metrics}");
    let work: Vec<u8> = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT work FROM media", [], |r| r.get(0))
        .expect("the working copy is kept");
    let (w, h) = bullhorn_imaging::dimensions(&work).expect("an image");
    assert_eq!((w, h), (4096, 3072), "at most 4096 px");

    // After a restart the paused channel posts from the kept copy: no decoding again.
    let text = std::fs::read_to_string(&config).expect("read");
    let broker = &text[text.find("[broker]").expect("broker")..];
    let broker = &broker[..broker.find("\n[").map_or(broker.len(), |e| e + 1)];
    std::fs::write(&config, text.replace(broker, &embedded_broker())).expect("write");
    let app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    let (status, _) = api.post("/api/resume", serde_json::json!({ "scope": "channel:late" })).await;
    assert_eq!(status, 200);
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") == 4).then_some(()))
        .await
        .expect("the fourth posted");
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;
    assert!(metrics.contains("bullhorn_media_work_copies_total 0\n"), "not decoded again: {metrics}");
    assert_eq!(masto.common.hits_to("POST", "/api/v2/media").len(), 4, "every channel posted the image");
}
