//! The usage console: one page, `GET /console`, where a tenant signs in
//! with its API key and sees its usage and cost per function over time,
//! its recent invocations and each one's logs — all drawn in the browser
//! from the usage API (`/usage/v1/…`), which does the key checks.
//!
//! The page and its assets are compiled into the binary, so the console
//! needs nothing at run time and loads nothing from elsewhere: its
//! Content-Security-Policy allows only this origin (`default-src 'self'`),
//! no inline script or style, and no DOM sinks that parse HTML (Trusted
//! Types with no policy) — what a guest printed is shown as text, never
//! markup.
//!
//! | route | what |
//! |---|---|
//! | `GET /console`, `GET /console/` | the page |
//! | `GET /console/console.js`, `console.css`, `favicon.svg` | its script, style and icon |
//!
//! These paths are taken before the default route, so a tenant named
//! `console` cannot serve functions named like the assets there.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

/// What the browser may do with the console's responses: load script,
/// style, images and API calls from this origin only, parse no HTML from
/// strings, submit no form anywhere (the sign-in form is handled by the
/// script, so the key never lands in a URL), and not be framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file of the console: where it is served and as what.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const PAGE: Asset = Asset {
    path: "/console",
    content_type: "text/html; charset=utf-8",
    body: include_str!("index.html"),
};

const ASSETS: [Asset; 3] = [
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("console.css"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("favicon.svg"),
    },
];

/// The console's routes, for [`crate::router`].
pub(crate) fn routes() -> Router<crate::Gateway> {
    assets()
}

/// The routes, stateless: they serve only what is compiled in.
fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = || async { serve(&PAGE) };
    let router = Router::new()
        .route(PAGE.path, get(page))
        .route("/console/", get(page));
    ASSETS.iter().fold(router, |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> Response {
    let mut resp = asset.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page's URLs carry nothing secret, but API paths name the tenant.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidated on every load: a new server's console replaces the old
    // one at once, and the files are small.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, http::HeaderMap, String) {
        let resp = assets::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        (parts.status, parts.headers, text)
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_policy() {
        for asset in std::iter::once(&PAGE).chain(&ASSETS) {
            let (status, headers, body) = get(asset.path).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.path);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body);
        }
        let (status, _, body) = get("/console/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, PAGE.body);
        assert_eq!(get("/console/nothing.js").await.0, StatusCode::NOT_FOUND);
    }

    /// What the policy would block fails here rather than silently in a
    /// browser: inline script and style, and anything from elsewhere.
    #[test]
    fn the_page_needs_nothing_the_policy_refuses() {
        let page = PAGE.body;
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..i + page[i..].find('>').expect("a closed tag")];
            assert!(tag.contains(" src=\"/console/"), "inline script: {tag}");
        }
        for (i, _) in page.match_indices("<link") {
            let tag = &page[i..i + page[i..].find('>').expect("a closed tag")];
            assert!(tag.contains(" href=\"/console/"), "{tag}");
        }
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "style attribute");
        let handlers = page.match_indices(" on").filter(|(i, _)| {
            let name = &page[i + 1..];
            let end = name.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(0);
            name[end..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "inline event handler");
        for asset in std::iter::once(&PAGE).chain(&ASSETS) {
            for scheme in ["http://", "https://", "//cdn", "url("] {
                // The SVG namespace is a name, not something loaded.
                let loads = asset
                    .body
                    .match_indices(scheme)
                    .filter(|(i, _)| !asset.body[*i..].starts_with("http://www.w3.org/"))
                    .count();
                assert_eq!(loads, 0, "{} refers to {scheme}", asset.path);
            }
        }
        let script = ASSETS[0].body;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!script.contains(sink), "{sink} in console.js");
        }
    }
}
