//! The asset server's decisions on a real folder, checked against what
//! Miniflare's asset worker answers for the same files.

use super::config::{HtmlHandling, NotFoundHandling, glob_matches};
use super::intent::{Intent, Resolver, decode_path, encode_path};
use super::store::{AssetDir, content_type};
use super::*;
use serde_json::json;

/// A folder of `files` (path, text).
fn folder(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for path in files {
        let file = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, path).unwrap();
    }
    dir
}

const SITE: &[&str] = &[
    "/index.html",
    "/about.html",
    "/blog/index.html",
    "/both.html",
    "/both/index.html",
    "/docs/readme",
    "/404.html",
    "/sub/404.html",
    "/bin/index",
];

/// What `path` means under `html` and `not_found`, as text: the served
/// file and status, `-> location`, or `none`.
fn intent(dir: &AssetDir, html: HtmlHandling, not_found: NotFoundHandling, path: &str) -> String {
    let find = |p: &str| dir.find(p);
    let resolver = Resolver {
        find: &find,
        html,
        not_found,
    };
    match resolver.intent(path) {
        Some(Intent::Serve(asset, status)) => {
            let file = asset.file.strip_prefix(dir.root()).unwrap();
            format!("/{} {status}", file.display())
        }
        Some(Intent::Redirect(to)) => format!("-> {to}"),
        None => "none".into(),
    }
}

#[test]
fn html_handling_serves_and_redirects_as_cloudflare_does() {
    let site = folder(SITE);
    let dir = AssetDir::new(site.path().to_path_buf());
    use HtmlHandling::*;
    let none = NotFoundHandling::None;
    // (path, auto-trailing-slash, force-trailing-slash, drop-trailing-slash, none)
    let table = [
        (
            "/",
            "/index.html 200",
            "/index.html 200",
            "/index.html 200",
            "none",
        ),
        ("/index.html", "-> /", "-> /", "-> /", "/index.html 200"),
        ("/index", "-> /", "-> /", "-> /", "none"),
        (
            "/about",
            "/about.html 200",
            "-> /about/",
            "/about.html 200",
            "none",
        ),
        (
            "/about/",
            "-> /about",
            "/about.html 200",
            "-> /about",
            "none",
        ),
        (
            "/about.html",
            "-> /about",
            "-> /about/",
            "-> /about",
            "/about.html 200",
        ),
        (
            "/blog",
            "-> /blog/",
            "-> /blog/",
            "/blog/index.html 200",
            "none",
        ),
        (
            "/blog/",
            "/blog/index.html 200",
            "/blog/index.html 200",
            "-> /blog",
            "none",
        ),
        (
            "/blog/index.html",
            "-> /blog/",
            "-> /blog/",
            "-> /blog",
            "/blog/index.html 200",
        ),
        (
            "/both",
            "/both.html 200",
            "-> /both/",
            "/both.html 200",
            "none",
        ),
        (
            "/both/",
            "/both/index.html 200",
            "/both/index.html 200",
            "-> /both",
            "none",
        ),
        (
            "/both.html",
            "-> /both",
            "/both.html 200",
            "-> /both",
            "/both.html 200",
        ),
        (
            "/both/index.html",
            "-> /both/",
            "-> /both/",
            "/both/index.html 200",
            "/both/index.html 200",
        ),
        (
            "/docs/readme",
            "/docs/readme 200",
            "/docs/readme 200",
            "/docs/readme 200",
            "/docs/readme 200",
        ),
        (
            "/bin/index",
            "/bin/index 200",
            "/bin/index 200",
            "/bin/index 200",
            "/bin/index 200",
        ),
        ("/nope", "none", "none", "none", "none"),
    ];
    for (path, auto, force, drop, exact) in table {
        for (html, want) in [
            (AutoTrailingSlash, auto),
            (ForceTrailingSlash, force),
            (DropTrailingSlash, drop),
            (None, exact),
        ] {
            assert_eq!(
                intent(&dir, html, none, path),
                want,
                "{path} under {html:?}"
            );
        }
    }
}

#[test]
fn not_found_handling_serves_the_nearest_404_page_or_the_index() {
    let site = folder(SITE);
    let dir = AssetDir::new(site.path().to_path_buf());
    let auto = HtmlHandling::AutoTrailingSlash;
    let page = NotFoundHandling::NotFoundPage;
    let spa = NotFoundHandling::SinglePageApplication;
    assert_eq!(intent(&dir, auto, page, "/nope"), "/404.html 404");
    assert_eq!(intent(&dir, auto, page, "/sub/a/b"), "/sub/404.html 404");
    assert_eq!(intent(&dir, auto, page, "/sub/"), "/sub/404.html 404");
    assert_eq!(intent(&dir, auto, spa, "/any/route"), "/index.html 200");
    // A page that exists is still itself.
    assert_eq!(intent(&dir, auto, spa, "/about"), "/about.html 200");
}

#[test]
fn only_files_inside_the_folder_are_assets() {
    let site = folder(&[
        "/a.txt",
        "/_headers",
        "/_redirects",
        "/.assetsignore",
        "/sub/b.txt",
    ]);
    let outside = folder(&["/secret.txt"]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), site.path().join("linked")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            site.path().join("link.txt"),
        )
        .unwrap();
    }
    let dir = AssetDir::new(site.path().to_path_buf());
    assert!(dir.find("/a.txt").is_some());
    assert!(dir.find("/sub/b.txt").is_some());
    for path in [
        "/",
        "/sub",
        "/sub/",
        "/_headers",
        "/_redirects",
        "/.assetsignore",
        "/../a.txt",
        "/sub/../a.txt",
        "/./a.txt",
        "/sub\\b.txt",
        "/linked/secret.txt",
        "/link.txt",
        "a.txt",
    ] {
        assert_eq!(dir.find(path), Option::None, "{path}");
    }
}

#[test]
fn an_etag_changes_when_the_file_does() {
    let site = folder(&["/a.txt"]);
    let dir = AssetDir::new(site.path().to_path_buf());
    let before = dir.find("/a.txt").unwrap().etag;
    assert_eq!(before.len(), 32);
    assert_eq!(
        dir.find("/a.txt").unwrap().etag,
        before,
        "stable while unchanged"
    );
    std::fs::write(site.path().join("a.txt"), "longer text").unwrap();
    assert_ne!(dir.find("/a.txt").unwrap().etag, before);
}

#[test]
fn content_types_are_the_mime_packages_with_a_charset_for_text() {
    for (name, want) in [
        ("index.html", Some("text/html; charset=utf-8")),
        ("a/style.CSS", Some("text/css; charset=utf-8")),
        ("app.js", Some("text/javascript; charset=utf-8")),
        ("app.mjs", Some("text/javascript; charset=utf-8")),
        ("data.json", Some("application/json")),
        ("favicon.ico", Some("image/vnd.microsoft.icon")),
        ("painting.jpg", Some("image/jpeg")),
        ("image.svg", Some("image/svg+xml")),
        ("font.woff2", Some("font/woff2")),
        ("module.wasm", Some("application/wasm")),
        ("notes.txt", Some("text/plain; charset=utf-8")),
        ("LICENSE", Option::None),
        (".html", Option::None),
        ("archive.unknownext", Option::None),
    ] {
        assert_eq!(content_type(name).as_deref(), want, "{name}");
    }
}

#[test]
fn paths_decode_and_encode_as_decode_and_encode_uri_component() {
    assert_eq!(decode_path("/a%20b.txt"), "/a b.txt");
    assert_eq!(decode_path("/%5Bx%5D.html"), "/[x].html");
    assert_eq!(decode_path("/caf%C3%A9"), "/café");
    // A segment that does not decode stays as it is.
    assert_eq!(decode_path("/100%/ok%20"), "/100%/ok ");
    assert_eq!(decode_path("/%FF"), "/%FF");
    assert_eq!(decode_path("//a///b"), "/a/b");
    assert_eq!(encode_path("/a b/[x].html"), "/a%20b/%5Bx%5D.html");
    assert_eq!(encode_path("/café"), "/caf%C3%A9");
    assert_eq!(encode_path("/keep-_.!~*'()"), "/keep-_.!~*'()");
}

#[test]
fn run_worker_first_globs_match_whole_paths() {
    assert!(glob_matches("/api/*", "/api/"));
    assert!(glob_matches("/api/*", "/api/a/b"));
    assert!(!glob_matches("/api/*", "/api"));
    assert!(!glob_matches("/api/*", "/x/api/a"));
    assert!(glob_matches("/exact", "/exact"));
    assert!(!glob_matches("/exact", "/exact/more"));
    assert!(glob_matches("/*.json", "/a/b.json"));
    assert!(glob_matches("/a*b*c", "/axxbyyc"));
    assert!(!glob_matches("/a*a", "/a"));
    assert!(glob_matches("*", "/anything"));
}

fn cx(root: &std::path::Path, date: &str, flags: &[&str]) -> OpenContext {
    OpenContext {
        persist_root: root.join(".state"),
        clock: Arc::new(crate::clock::SystemClock),
        config: Arc::default(),
        settings: Default::default(),
        project_root: root.to_path_buf(),
        compatibility_date: date.into(),
        compatibility_flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

/// A request for `target` (a path, and a query if any) on localhost.
fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> AssetRequest {
    AssetRequest {
        method: method.into(),
        url: url::Url::parse(&format!("http://localhost{target}")).unwrap(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

/// Whether the front runs the worker for `request` (no answer first).
fn to_worker(assets: &Assets, request: &AssetRequest) -> bool {
    assets.answer_first(request).is_none()
}

#[test]
fn the_router_runs_the_worker_where_no_asset_answers() {
    let project = folder(&[
        "/public/index.html",
        "/public/api/x.txt",
        "/public/404.html",
    ]);
    let config = json!({"directory": "public", "not_found_handling": "404-page"});
    let assets = Assets::open(&config, &cx(project.path(), "2026-06-01", &[])).unwrap();
    assert!(!to_worker(&assets, &request("GET", "/", &[])));
    assert!(to_worker(&assets, &request("GET", "/nope", &[])));
    // A browser's navigation gets the 404 page, from 2025-04-01 on.
    let navigate = [("Sec-Fetch-Mode", "navigate")];
    assert!(!to_worker(&assets, &request("GET", "/nope", &navigate)));
    let older = Assets::open(&config, &cx(project.path(), "2025-03-01", &[])).unwrap();
    assert!(to_worker(&older, &request("GET", "/nope", &navigate)));
    let flagged = cx(
        project.path(),
        "2025-03-01",
        &["assets_navigation_prefers_asset_serving"],
    );
    let flagged = Assets::open(&config, &flagged).unwrap();
    assert!(!to_worker(&flagged, &request("GET", "/nope", &navigate)));
    let opted_out = cx(
        project.path(),
        "2026-06-01",
        &["assets_navigation_has_no_effect"],
    );
    let opted_out = Assets::open(&config, &opted_out).unwrap();
    assert!(to_worker(&opted_out, &request("GET", "/nope", &navigate)));

    let all = json!({"directory": "public", "run_worker_first": true});
    let all = Assets::open(&all, &cx(project.path(), "2026-06-01", &[])).unwrap();
    assert!(to_worker(&all, &request("GET", "/", &[])));
}

#[test]
fn answers_carry_cloudflares_statuses_and_headers() {
    let project = folder(&["/public/style.css", "/public/about.html"]);
    let config = json!({"directory": "./public"});
    let assets = Assets::open(&config, &cx(project.path(), "2026-06-01", &[])).unwrap();

    let ok = assets.answer(&request("GET", "/style.css", &[]));
    assert_eq!(ok.status, 200);
    let names: Vec<&str> = ok.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["ETag", "Content-Type", "Cache-Control", "CF-Cache-Status"]
    );
    assert!(ok.body.is_some());
    let etag = ok.headers[0].1.clone();

    let head = assets.answer(&request("HEAD", "/style.css", &[]));
    assert_eq!((head.status, head.body.is_none()), (200, true));
    let post = assets.answer(&request("POST", "/style.css", &[]));
    assert_eq!((post.status, post.status_text), (405, "Method Not Allowed"));
    let missing = assets.answer(&request("GET", "/nope", &[]));
    assert_eq!((missing.status, missing.status_text), (404, "Not Found"));
    assert!(missing.headers.is_empty());

    let cached = assets.answer(&request("GET", "/style.css", &[("If-None-Match", &etag)]));
    assert_eq!((cached.status, cached.body.is_none()), (304, true));
    let other = assets.answer(&request(
        "GET",
        "/style.css",
        &[("If-None-Match", "\"other\"")],
    ));
    assert_eq!(other.status, 200);
    let ranged = assets.answer(&request("GET", "/style.css", &[("Range", "bytes=0-1")]));
    assert!(!ranged.headers.iter().any(|(n, _)| n == "Cache-Control"));

    let moved = assets.answer(&request("GET", "/about.html?a=1", &[]));
    assert_eq!(moved.status, 307);
    assert_eq!(
        moved.headers,
        [("Location".to_owned(), "/about?a=1".to_owned())]
    );
    // A path served only at its encoded form redirects there.
    let project = folder(&["/public/[x].txt"]);
    let assets = Assets::open(&config, &cx(project.path(), "2026-06-01", &[])).unwrap();
    let canonical = assets.answer(&request("GET", "/[x].txt", &[]));
    assert_eq!(canonical.status, 307);
    assert_eq!(canonical.headers[0].1, "/%5Bx%5D.txt");
    assert_eq!(
        assets.answer(&request("GET", "/%5Bx%5D.txt", &[])).status,
        200
    );
}

#[test]
fn config_errors_name_the_field() {
    let project = folder(&["/public/index.html"]);
    let cx = cx(project.path(), "2026-06-01", &[]);
    let error = |value: serde_json::Value| Assets::open(&value, &cx).unwrap_err().to_string();
    assert!(error(json!({})).contains("missing the required \"directory\" property"));
    assert!(error(json!({"directory": "missing"})).contains("does not exist"));
    assert!(
        error(json!({"directory": "public", "binding": "1x"}))
            .contains("The binding name \"1x\" is invalid")
    );
    assert!(
        error(json!({"directory": "public", "not_found_handling": "spa"}))
            .contains("Expected \"assets.not_found_handling\" field to be one of")
    );
    assert!(
        error(json!({"directory": "public", "run_worker_first": ["api/*"]}))
            .contains("'api/*': rules must start with '/' or '!/'")
    );
    assert!(
        error(json!({"directory": "public", "run_worker_first": "yes"}))
            .contains("to be a boolean or an array of strings")
    );
    assert!(error(json!("public")).contains("expected an object"));
}

fn headers_for(rules: &headers::HeaderRules, host: &str, path: &str) -> Vec<(String, String)> {
    let mut out = vec![
        ("ETag".to_owned(), "\"e\"".to_owned()),
        ("Cache-Control".to_owned(), "public".to_owned()),
    ];
    rules.apply(host, path, &mut out);
    out
}

#[test]
fn headers_rules_set_append_unset_and_fill_placeholders() {
    let text = "\
# comment
/*
  X-All: yes
  X-Multi: a
  X-Multi: b
/blog/:post
  X-Post: :post
  ! ETag
/files/*
  Cache-Control: max-age=:splat
  X-All: again
https://:sub.example.com/*
  X-Sub: :sub
";
    let (rules, skipped) = headers::HeaderRules::parse(text);
    assert!(skipped.is_empty(), "{skipped:?}");
    let pairs = |v: Vec<(String, String)>| {
        v.into_iter()
            .map(|(n, v)| format!("{}={v}", n.to_ascii_lowercase()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(headers_for(&rules, "localhost", "/")),
        [
            "etag=\"e\"",
            "cache-control=public",
            "x-all=yes",
            "x-multi=a, b"
        ]
    );
    assert_eq!(
        pairs(headers_for(&rules, "localhost", "/blog/hello")),
        [
            "cache-control=public",
            "x-all=yes",
            "x-multi=a, b",
            "x-post=hello"
        ]
    );
    // One segment only: not /blog/a/b.
    assert!(
        !pairs(headers_for(&rules, "localhost", "/blog/a/b"))
            .iter()
            .any(|h| h.starts_with("x-post"))
    );
    // A later rule appends to a header an earlier one set, and replaces ours.
    assert_eq!(
        pairs(headers_for(&rules, "localhost", "/files/10")),
        [
            "etag=\"e\"",
            "x-all=yes, again",
            "x-multi=a, b",
            "cache-control=max-age=10"
        ]
    );
    assert!(
        pairs(headers_for(&rules, "docs.example.com", "/x")).contains(&"x-sub=docs".to_owned())
    );
    assert!(
        !pairs(headers_for(&rules, "a.b.example.com", "/x"))
            .iter()
            .any(|h| h.starts_with("x-sub"))
    );
}

#[test]
fn headers_lines_that_cannot_apply_are_skipped_and_said() {
    let (rules, skipped) = headers::HeaderRules::parse(
        "X-Early: 1\n/a\n  not a header\n  X-Ok: 1\n/empty\n/b/*/c/*\n  X-Twice: 1\nhttp://x.com/\n  X-No: 1\n",
    );
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert_eq!(
        headers_for(&rules, "h", "/a").last(),
        Some(&("x-ok".to_owned(), "1".to_owned()))
    );
    assert!(
        !headers_for(&rules, "h", "/b/1/c/2")
            .iter()
            .any(|(n, _)| n == "x-twice")
    );
}

#[test]
fn the_headers_file_is_read_again_when_it_changes() {
    let project = folder(&["/public/a.txt"]);
    let config = json!({"directory": "public"});
    let assets = Assets::open(&config, &cx(project.path(), "2026-06-01", &[])).unwrap();
    let has = |assets: &Assets, name: &str| {
        assets
            .answer(&request("GET", "/a.txt", &[]))
            .headers
            .iter()
            .any(|(n, _)| n == name)
    };
    assert!(!has(&assets, "x-one"));
    std::fs::write(project.path().join("public/_headers"), "/*\n  X-One: 1\n").unwrap();
    assert!(has(&assets, "x-one"));
    std::fs::write(
        project.path().join("public/_headers"),
        "/*\n  X-Second: 22\n",
    )
    .unwrap();
    assert!(!has(&assets, "x-one") && has(&assets, "x-second"));
    // A host rule reads the hostname, without the port.
    std::fs::write(
        project.path().join("public/_headers"),
        "https://:sub.example.com/*\n  X-Sub: :sub\n",
    )
    .unwrap();
    for authority in ["docs.example.com:8787", "user@docs.example.com"] {
        let asked = AssetRequest {
            url: url::Url::parse(&format!("http://{authority}/a.txt")).unwrap(),
            ..request("GET", "/a.txt", &[])
        };
        let answer = assets.answer(&asked);
        assert!(
            answer
                .headers
                .contains(&("x-sub".to_owned(), "docs".to_owned())),
            "{authority}: {:?}",
            answer.headers
        );
    }
}

#[test]
fn redirects_rules_match_exact_paths_first_then_patterns_in_order() {
    let text = "\
/old /new 301
/a/:x /b/:x
/a/fixed /never
/files/* /store/:splat 307
/app/* /shell 200
/docs/* /index.html
/ /index
/x /y 404
/old /again
https://:sub.example.com/* https://example.com/:sub/:splat 308
";
    let (rules, skipped) = redirects::RedirectRules::parse(text, true);
    // The loops, the status and the second /old.
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    let find = |host: &str, path: &str| {
        rules
            .find(host, path)
            .map(|r| format!("{} {}", r.status, r.to))
    };
    assert_eq!(find("h", "/old").as_deref(), Some("301 /new"));
    assert_eq!(find("h", "/a/1").as_deref(), Some("302 /b/1"));
    // After a pattern, an exact rule is matched in order with the patterns.
    assert_eq!(find("h", "/a/fixed").as_deref(), Some("302 /b/fixed"));
    assert_eq!(find("h", "/files/a//b").as_deref(), Some("307 /store/a/b"));
    assert_eq!(find("h", "/app/x").as_deref(), Some("200 /shell"));
    assert_eq!(find("h", "/docs/x"), Option::None);
    assert_eq!(find("h", "/"), Option::None);
    assert_eq!(
        find("api.example.com", "/v1").as_deref(),
        Some("308 https://example.com/api/v1")
    );

    let url = url::Url::parse("http://localhost/from?a=1").unwrap();
    assert_eq!(redirects::location(&url, "/to").as_deref(), Some("/to?a=1"));
    assert_eq!(
        redirects::location(&url, "/to?b=2#f").as_deref(),
        Some("/to?b=2#f")
    );
    assert_eq!(
        redirects::location(&url, "https://example.com/p").as_deref(),
        Some("https://example.com/p?a=1")
    );
}

#[test]
fn a_redirect_answers_before_any_asset_and_200_serves_another_path() {
    let project = folder(&["/public/page.html", "/public/old.html"]);
    std::fs::write(
        project.path().join("public/_redirects"),
        "/old /page 301\n/spa/* /page 200\n/gone/* /nothing 200\n",
    )
    .unwrap();
    let assets = Assets::open(
        &json!({"directory": "public"}),
        &cx(project.path(), "2026-06-01", &[]),
    )
    .unwrap();
    let moved = assets.answer(&request("POST", "/old?k=v", &[]));
    assert_eq!(
        (moved.status, moved.status_text),
        (301, "Moved Permanently")
    );
    assert_eq!(
        moved.headers,
        [("Location".to_owned(), "/page?k=v".to_owned())]
    );
    assert!(!to_worker(&assets, &request("GET", "/old", &[])));

    let spa = assets.answer(&request("GET", "/spa/a/b", &[]));
    assert_eq!(spa.status, 200);
    assert!(spa.body.unwrap().ends_with("page.html"));
    // A 200 rule to nothing: the assets answer 404, not the worker.
    assert!(!to_worker(&assets, &request("GET", "/gone/x", &[])));
    assert_eq!(assets.answer(&request("GET", "/gone/x", &[])).status, 404);
    assert!(to_worker(&assets, &request("GET", "/elsewhere", &[])));
}
