//! The dashboard: static files from `web/static/`, embedded at compile time and served under `/admin/monitor/`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use warp::filters::path::{FullPath, Tail};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The page's Content-Security-Policy: only this origin's scripts, styles and requests; no
/// inline code, no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file of the dashboard.
#[derive(Debug)]
pub struct Asset {
    /// The path under `assets/` (and under `web/static/`), e.g. `app.js`.
    pub path: &'static str,
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../web/static/",
                $path
            )),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The page itself, served at `/admin/monitor/`.
pub static INDEX: Asset = asset!("index.html", HTML);

/// Every file the page loads, served at `/admin/monitor/assets/<path>`.
pub static ASSETS: &[Asset] = &[
    asset!("alerts.js", JS),
    asset!("app.js", JS),
    asset!("charts.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("live.js", JS),
    asset!("requests.js", JS),
    asset!("sections.js", JS),
    asset!("style.css", CSS),
    asset!("icon.svg", SVG),
    asset!("vendor/chart.umd.min.js", JS),
];

/// A strong validator per file, computed once: index 0 is the page, then [`ASSETS`] in order.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| {
                let mut h = DefaultHasher::new();
                a.body.hash(&mut h);
                HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", h.finish(), a.body.len()))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
            })
            .collect()
    })
}

/// Answers one file: 304 when the client's copy is current, else the bytes with their headers.
fn serve(asset: &'static Asset, etag: &HeaderValue, if_none_match: Option<&str>) -> Response {
    let current = if_none_match.is_some_and(|inm| {
        inm.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t.as_bytes() == etag.as_bytes())
    });
    let mut resp = if current {
        let mut r = Response::new(Default::default());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(asset.body.into());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    // Always revalidate: the files change with the binary, and a 304 costs next to nothing.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.content_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

/// Sends `/admin/monitor` to `/admin/monitor/`, so the page's relative URLs resolve under it.
fn to_trailing_slash(full: &FullPath) -> Response {
    let last = full.as_str().rsplit('/').next().unwrap_or_default();
    let mut r = Response::new(Default::default());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    // Relative, so it stays right behind a proxy that mounts the host under a prefix.
    if let Ok(v) = HeaderValue::from_str(&format!("{last}/")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The dashboard's routes, mounted under `/admin/monitor/`: the page at the end of the path
/// and its files under `assets/`.
pub fn routes() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let read = warp::get().or(warp::head()).unify();
    let if_none_match = warp::header::optional::<String>("if-none-match");
    let page = warp::path::end()
        .and(read)
        .and(warp::path::full())
        .and(if_none_match)
        .map(|full: FullPath, inm: Option<String>| {
            if full.as_str().ends_with('/') {
                serve(&INDEX, &etags()[0], inm.as_deref())
            } else {
                to_trailing_slash(&full)
            }
        });
    let assets = warp::path("assets")
        .and(warp::path::tail())
        .and(read)
        .and(if_none_match)
        .and_then(|tail: Tail, inm: Option<String>| async move {
            ASSETS
                .iter()
                .position(|a| a.path == tail.as_str())
                .map(|i| serve(&ASSETS[i], &etags()[i + 1], inm.as_deref()))
                .ok_or_else(warp::reject::not_found)
        });
    page.or(assets).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
        warp::path!("admin" / "monitor" / ..).and(routes())
    }

    /// Guards the page's headers: HTML, revalidated, with a strict CSP that forbids inline code.
    #[tokio::test]
    async fn page_is_served_with_a_strict_policy() {
        let r = warp::test::request()
            .path("/admin/monitor/")
            .reply(&app())
            .await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], HTML);
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        let body = std::str::from_utf8(r.body()).expect("utf-8");
        assert!(body.contains("assets/app.js"), "{body}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no external URL"
        );
    }

    /// Guards relative URLs: without the trailing slash the page redirects to it.
    #[tokio::test]
    async fn page_without_slash_redirects() {
        let r = warp::test::request()
            .path("/admin/monitor")
            .reply(&app())
            .await;
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[header::LOCATION], "monitor/");
    }

    /// Guards every embedded file: served with its type, and 304 once the client has it.
    #[tokio::test]
    async fn assets_have_types_and_validators() {
        for a in ASSETS {
            let path = format!("/admin/monitor/assets/{}", a.path);
            let r = warp::test::request().path(&path).reply(&app()).await;
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type, "{path}");
            assert_eq!(r.body().as_ref(), a.body, "{path}");
            let etag = r.headers()[header::ETAG].to_str().expect("etag").to_owned();
            let again = warp::test::request()
                .path(&path)
                .header("if-none-match", &etag)
                .reply(&app())
                .await;
            assert_eq!(again.status(), 304, "{path}");
            assert!(again.body().is_empty());
        }
        let js = ASSETS.iter().find(|a| a.path == "app.js").expect("app.js");
        assert_eq!(js.content_type, JS);
    }

    /// Guards against a forgotten file: everything under `web/static/` is embedded.
    #[test]
    fn every_static_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/static");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).expect("web/static") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let rel = p.strip_prefix(&root).expect("under root");
                    on_disk.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| a.path.to_owned())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    /// Guards the 404 for files that do not exist and for path tricks.
    #[tokio::test]
    async fn unknown_assets_are_not_found() {
        for path in [
            "/admin/monitor/assets/nope.js",
            "/admin/monitor/assets/../index.html",
            "/admin/monitor/assets/",
            "/admin/monitor/index.html",
        ] {
            let r = warp::test::request().path(path).reply(&app()).await;
            assert_eq!(r.status(), 404, "{path}");
        }
    }
}
