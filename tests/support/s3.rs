//! A fake S3-compatible object store (path-style, one bucket) that checks what S3 checks
//! on a presigned request: the SigV4 query signature, recomputed here independently of
//! the client (canonical request, string to sign, derived key), the credential's access
//! key and scope, and expiry. Objects can be read back without auth, as a public bucket's.
//! Errors are S3's XML bodies (`SignatureDoesNotMatch`, `AccessDenied`, `NoSuchKey`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use super::platforms::{Common, Server, raw};

pub const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const BUCKET: &str = "rcso-alert-media";
pub const REGION: &str = "us-east-1";

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    /// Key → (content type, bytes).
    pub objects: Mutex<BTreeMap<String, (String, Bytes)>>,
    /// Keys deleted, in order.
    pub deleted: Mutex<Vec<String>>,
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::platforms::serve(router).await, fake)
}

fn s3_error(status: u16, code: &str, message: &str) -> Response {
    raw(
        status,
        &[],
        "application/xml",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
             <RequestId>4442587FB7D0A2F9</RequestId></Error>"
        ),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// AWS's URI encoding: unreserved characters as they are, everything else %XX.
fn aws_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a presigned request is refused, if it is.
fn verify(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), (&'static str, String)> {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let denied = |m: &str| ("AccessDenied", m.to_owned());
    if get("X-Amz-Algorithm").as_deref() != Some("AWS4-HMAC-SHA256") {
        return Err(denied("Query-string authentication version 4 requires the X-Amz-Algorithm parameter"));
    }
    let credential = get("X-Amz-Credential").ok_or_else(|| denied("no X-Amz-Credential"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminal] = parts.as_slice() else {
        return Err(denied("malformed credential"));
    };
    if *access_key != ACCESS_KEY {
        return Err(("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.".into()));
    }
    if *region != REGION || *service != "s3" || *terminal != "aws4_request" {
        return Err(denied("the credential scope is wrong"));
    }
    let amz_date = get("X-Amz-Date").ok_or_else(|| denied("no X-Amz-Date"))?;
    let expires: i64 = get("X-Amz-Expires").and_then(|e| e.parse().ok()).ok_or_else(|| denied("no X-Amz-Expires"))?;
    let signed_at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &amz_date)
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .ok_or_else(|| denied("bad X-Amz-Date"))?;
    let age = jiff::Timestamp::now().as_second() - signed_at.timestamp().as_second();
    if age > expires || age < -900 {
        return Err(denied("Request has expired"));
    }
    let signed_headers = get("X-Amz-SignedHeaders").ok_or_else(|| denied("no X-Amz-SignedHeaders"))?;
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let mut pairs: Vec<(String, String)> =
        query.iter().filter(|(k, _)| k != "X-Amz-Signature").map(|(k, v)| (aws_encode(k), aws_encode(v))).collect();
    pairs.sort();
    let canonical_query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical_request =
        format!("{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD", uri.path());
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
    for part in [*region, "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex(&hmac(&key, &string_to_sign));
    if get("X-Amz-Signature").as_deref() != Some(expected.as_str()) {
        return Err((
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.".into(),
        ));
    }
    Ok(())
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    f.common.record(&method, &uri, &headers, &body);
    let Some(key) = uri.path().strip_prefix(&format!("/{BUCKET}/")).map(str::to_owned) else {
        return s3_error(404, "NoSuchBucket", "The specified bucket does not exist");
    };
    if method == Method::GET {
        // A public bucket: reading needs no signature.
        return match f.objects.lock().expect("objects").get(&key) {
            Some((ct, bytes)) => {
                let mut r = axum::response::IntoResponse::into_response(bytes.clone());
                r.headers_mut().insert("content-type", ct.parse().expect("content type"));
                r
            }
            None => s3_error(404, "NoSuchKey", "The specified key does not exist."),
        };
    }
    if let Err((code, message)) = verify(&method, &uri, &headers) {
        return s3_error(403, code, &message);
    }
    match method.as_str() {
        "PUT" => {
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("binary/octet-stream");
            f.objects.lock().expect("objects").insert(key, (ct.to_owned(), body));
            raw(200, &[("etag", "\"9b2cf535f27731c974343645a3985328\"".to_owned())], "application/xml", String::new())
        }
        "DELETE" => {
            f.objects.lock().expect("objects").remove(&key);
            f.deleted.lock().expect("deleted").push(key);
            raw(204, &[], "application/xml", String::new())
        }
        _ => s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource."),
    }
}
