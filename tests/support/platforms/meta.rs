//! A fake of Meta's Graph APIs as Facebook Pages, Instagram and Threads use them: feed
//! and photo posts, comments, delete; Instagram and Threads containers (processing, then
//! finished, then published) and publish; the account's latest posts; Graph errors
//! (`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`) including
//! code 190 for a bad token, 100/33 for a missing object, 506 for a duplicate, and the
//! page throttle (code 32 with `X-Business-Use-Case-Usage`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Hit, Server, json, with_fault};

pub const TOKEN: &str = "EAAGm0PX4ZCpsBAPageToken";
pub const PAGE: &str = "112233445566";
pub const IG: &str = "17841400000000001";
pub const THREADS: &str = "7654321000";

#[derive(Debug, Clone)]
pub struct Object {
    pub id: String,
    /// feed | photo | comment | ig_media | ig_comment | thread
    pub kind: &'static str,
    pub text: String,
    pub parent: Option<String>,
    pub image: Option<String>,
    pub alt: Option<String>,
    pub deleted: bool,
    pub created: jiff::Timestamp,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub owner: String,
    pub params: BTreeMap<String, String>,
    /// Polls left while IN_PROGRESS.
    pub processing: u32,
    pub published: Option<String>,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub objects: Mutex<Vec<Object>>,
    pub containers: Mutex<BTreeMap<String, Container>>,
}

impl Fake {
    pub fn live(&self, kind: &str) -> Vec<Object> {
        self.objects.lock().expect("objects").iter().filter(|o| o.kind == kind && !o.deleted).cloned().collect()
    }

    /// The page throttle as Graph sends it: HTTP 400, code 32, the wait in minutes.
    pub fn throttle(minutes: u32) -> super::Fault {
        super::Fault::respond(
            400,
            &[(
                "x-business-use-case-usage",
                &format!(
                    r#"{{"{PAGE}":[{{"type":"pages","call_count":100,"total_cputime":12,"total_time":15,"estimated_time_to_regain_access":{minutes}}}]}}"#
                ),
            )],
            r#"{"error":{"message":"(#32) Page request limit reached","type":"OAuthException","code":32,"fbtrace_id":"AbCdEf123"}}"#,
        )
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn error(status: u16, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut e =
        serde_json::json!({ "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123" });
    if let Some(s) = subcode {
        e["error_subcode"] = s.into();
    }
    json(status, &[], serde_json::json!({ "error": e }))
}

fn missing(id: &str) -> Response {
    error(
        400,
        100,
        Some(33),
        &format!(
            "Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        ),
    )
}

/// Form fields, or the multipart fields for a photo upload.
fn params(hit: &Hit) -> BTreeMap<String, String> {
    if hit.header("content-type").is_some_and(|c| c.starts_with("multipart/")) {
        return hit
            .multipart_fields()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v.len() > 200 {
                        format!("<{} bytes>", v.len())
                    } else {
                        String::from_utf8_lossy(&v).into_owned()
                    },
                )
            })
            .collect();
    }
    hit.form().into_iter().collect()
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    if hit.bearer() != Some(TOKEN) {
        return error(400, 190, None, "Invalid OAuth access token - Cannot parse access token");
    }
    let segs: Vec<String> = hit
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !(s.starts_with('v') && s[1..].contains('.')))
        .map(str::to_owned)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let p = params(&hit);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    match (method.as_str(), segs.as_slice()) {
        ("POST", [PAGE, "feed"]) => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "feed", move || {
                let text = get("message");
                if f2.live("feed").iter().any(|o| o.text == text) {
                    return error(400, 506, Some(1_455_006), "Duplicate status message");
                }
                let id = format!("{PAGE}_{}", 900 + f2.common.next_id());
                push(&f2, &id, "feed", &text, None, None, None);
                json(200, &[], serde_json::json!({ "id": id }))
            })
            .await
        }
        ("POST", [PAGE, "photos"]) => {
            with_fault(&f.common, "photos", || {
                let image = p.get("url").cloned().or_else(|| p.get("source").cloned());
                match &image {
                    Some(u) if u.starts_with("https://") || u.starts_with('<') => {}
                    _ => return error(400, 324, Some(2_069_019), "(#324) Missing or invalid image file"),
                }
                let n = f.common.next_id();
                let id = format!("{PAGE}_{}", 900 + n);
                push(&f, &id, "feed", &get("message"), None, image, p.get("alt_text_custom").cloned());
                json(200, &[], serde_json::json!({ "id": format!("77{n}"), "post_id": id }))
            })
            .await
        }
        ("POST", [parent, "comments"]) => {
            let parent = (*parent).to_owned();
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "comments", move || {
                if !f2.objects.lock().expect("objects").iter().any(|o| o.id == parent && !o.deleted) {
                    return missing(&parent);
                }
                let kind = if parent.contains('_') { "comment" } else { "ig_comment" };
                let id = format!("{parent}_c{}", f2.common.next_id());
                push(&f2, &id, kind, &get("message"), Some(parent.clone()), None, None);
                json(200, &[], serde_json::json!({ "id": id }))
            })
            .await
        }
        ("GET", [PAGE, "feed"]) => list(&f, |o| o.kind == "feed", "message"),
        ("GET", [parent, "comments"]) => {
            let parent = (*parent).to_owned();
            let field = if parent.contains('_') { "message" } else { "text" };
            list(&f, |o| o.parent.as_deref() == Some(parent.as_str()), field)
        }
        ("GET", [PAGE]) => json(200, &[], serde_json::json!({ "id": PAGE, "name": "Ruiz County Sheriff's Office" })),
        ("GET", [IG]) => json(200, &[], serde_json::json!({ "id": IG, "username": "ruizcountysheriff" })),
        ("GET", ["me"]) => json(200, &[], serde_json::json!({ "id": THREADS, "username": "ruizcountysheriff" })),
        ("POST", [owner @ (IG | THREADS), what @ ("media" | "threads")]) => {
            let route = if *what == "media" { "ig_media" } else { "th_create" };
            let owner = (*owner).to_owned();
            let f2 = Arc::clone(&f);
            let p = p.clone();
            with_fault(&f.common, route, move || {
                let get = |k: &str| p.get(k).cloned().unwrap_or_default();
                if owner == IG && !get("image_url").starts_with("https://") {
                    return error(400, 9004, Some(2_207_052), "Only photo or video can be accepted as media type.");
                }
                if owner == THREADS && !matches!(get("media_type").as_str(), "TEXT" | "IMAGE") {
                    return error(400, 100, None, "(#100) The parameter media_type is required.");
                }
                if let Some(r) = p.get("reply_to_id")
                    && !f2.objects.lock().expect("objects").iter().any(|o| &o.id == r && !o.deleted)
                {
                    return missing(r);
                }
                let id = format!("1799{:08}", f2.common.next_id());
                let processing = u32::from(p.contains_key("image_url"));
                f2.containers
                    .lock()
                    .expect("containers")
                    .insert(id.clone(), Container { owner, params: p.clone(), processing, published: None });
                json(200, &[], serde_json::json!({ "id": id }))
            })
            .await
        }
        ("POST", [owner @ (IG | THREADS), what @ ("media_publish" | "threads_publish")]) => {
            let route = if *what == "media_publish" { "ig_publish" } else { "th_publish" };
            let owner = (*owner).to_owned();
            let f2 = Arc::clone(&f);
            with_fault(&f.common, route, move || publish(&f2, &owner, &get("creation_id"))).await
        }
        ("GET", [owner @ (IG | THREADS), "media" | "threads"]) => {
            let (kind, field) = if *owner == IG { ("ig_media", "caption") } else { ("thread", "text") };
            list(&f, |o| o.kind == kind, field)
        }
        ("GET", [id]) => {
            if let Some(c) = f.containers.lock().expect("containers").get_mut(*id) {
                let status = if c.published.is_some() {
                    "PUBLISHED"
                } else if c.processing > 0 {
                    c.processing -= 1;
                    "IN_PROGRESS"
                } else {
                    "FINISHED"
                };
                return json(200, &[], serde_json::json!({ "id": id, "status_code": status, "status": status }));
            }
            match f.objects.lock().expect("objects").iter().find(|o| o.id == *id && !o.deleted) {
                Some(o) => json(200, &[], serde_json::json!({ "id": o.id, "permalink": permalink(o) })),
                None => missing(id),
            }
        }
        ("DELETE", [id]) => {
            let mut objects = f.objects.lock().expect("objects");
            match objects.iter_mut().find(|o| o.id == *id && !o.deleted) {
                Some(o) if o.kind == "ig_media" => {
                    error(400, 100, None, "(#100) Tried accessing nonexisting field or an unsupported operation")
                }
                Some(o) => {
                    o.deleted = true;
                    json(200, &[], serde_json::json!({ "success": true, "deleted_id": id }))
                }
                None => missing(id),
            }
        }
        _ => error(400, 100, None, "(#100) Unknown path components"),
    }
}

fn permalink(o: &Object) -> String {
    match o.kind {
        "ig_media" => format!("https://www.instagram.com/p/C{}/", o.id),
        "thread" => format!("https://www.threads.net/@ruizcountysheriff/post/T{}", o.id),
        _ => format!("https://www.facebook.com/{}", o.id),
    }
}

fn push(
    f: &Fake,
    id: &str,
    kind: &'static str,
    text: &str,
    parent: Option<String>,
    image: Option<String>,
    alt: Option<String>,
) {
    f.objects.lock().expect("objects").push(Object {
        id: id.to_owned(),
        kind,
        text: text.to_owned(),
        parent,
        image,
        alt,
        deleted: false,
        created: jiff::Timestamp::now(),
    });
}

fn publish(f: &Fake, owner: &str, creation_id: &str) -> Response {
    let mut containers = f.containers.lock().expect("containers");
    let Some(c) = containers.get_mut(creation_id).filter(|c| c.owner == owner) else {
        return missing(creation_id);
    };
    if c.published.is_some() {
        return error(400, 9007, Some(2_207_027), "The media has already been published");
    }
    if c.processing > 0 {
        return error(400, 9007, Some(2_207_027), "Media ID is not available");
    }
    let id = format!("1790{:08}", f.common.next_id());
    c.published = Some(id.clone());
    let (kind, text) = if owner == IG {
        ("ig_media", c.params.get("caption").cloned().unwrap_or_default())
    } else {
        ("thread", c.params.get("text").cloned().unwrap_or_default())
    };
    let parent = c.params.get("reply_to_id").cloned();
    push(f, &id, kind, &text, parent, c.params.get("image_url").cloned(), c.params.get("alt_text").cloned());
    json(200, &[], serde_json::json!({ "id": id }))
}

fn list(f: &Fake, keep: impl Fn(&Object) -> bool, field: &str) -> Response {
    let objects = f.objects.lock().expect("objects");
    let data: Vec<serde_json::Value> = objects
        .iter()
        .rev()
        .filter(|o| !o.deleted && keep(o))
        .take(25)
        .map(|o| {
            let mut v = serde_json::json!({
                "id": o.id, "permalink_url": permalink(o), "permalink": permalink(o),
                // Graph's own format: no colon in the offset.
                "created_time": o.created.strftime("%Y-%m-%dT%H:%M:%S+0000").to_string(),
                "timestamp": o.created.strftime("%Y-%m-%dT%H:%M:%S+0000").to_string(),
            });
            v[field] = o.text.clone().into();
            v
        })
        .collect();
    json(200, &[], serde_json::json!({ "data": data, "paging": {} }))
}
