//! The command centre on the admin listener: one page for the member's operators and
//! auditors that shows this gateway live — exchanges, refusals, latency, cache, limits,
//! breakers, its audit log and its partners', the federation — from the gateway's own
//! series and state ([`state`]), with a search of the audit log for auditors through the
//! auditor face. Served under a Content-Security-Policy that allows only its own files.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /console/` | the page (HTML) |
//! | `GET /console/state` | what the page shows, as JSON (polled every 2 s) |
//! | `GET /console/assets/…` | its script and style sheet, and the vendored charting library |

mod series;
mod state;

use bytes::Bytes;
use contracts::{Problem, ProblemCode};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::gateway::Gateway;
use crate::http::{Reply, problem};

/// Who looks at the page, and what each list lets them see.
pub(crate) struct Viewer {
    /// Their identity, as the certificate names it.
    pub identity: String,
    /// On `admin.operators`.
    pub operator: bool,
    /// On `admin.auditors`: the search of the audit log is theirs.
    pub auditor: bool,
}

/// Only the page's own files: no inline script or style, no other origin, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The files under `/console/assets/`: path, media type, contents.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/console.css"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/console/vendor/uplot/LICENSE"),
    ),
];

/// Answers one request under `/console`.
pub(crate) async fn route(gw: &Gateway, viewer: Viewer, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    let mut reply = match path {
        _ if req.method() != Method::GET => {
            let mut r = problem(&Problem::new(
                ProblemCode::MethodNotAllowed,
                format!(
                    "{} is not served on the command centre: GET only",
                    req.method()
                ),
            ));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            r
        }
        "/console" => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/console/"));
            r
        }
        "/console/" => file("text/html; charset=utf-8", page(gw, &viewer).into()),
        "/console/state" => crate::http::json(&state::state(gw, &viewer).await),
        _ => match path
            .strip_prefix("/console/assets/")
            .and_then(|name| ASSETS.iter().find(|(n, _, _)| *n == name))
        {
            Some((_, media, body)) => file(media, Bytes::from_static(body)),
            None => problem(&Problem::new(
                ProblemCode::NotFound,
                format!("no command centre resource at {path}"),
            )),
        },
    };
    secure(&mut reply);
    reply
}

fn file(media: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r
}

/// The headers every answer of the command centre carries.
fn secure(r: &mut Reply) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `s` safe inside HTML text and quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: its frame, the member and the viewer, and the federation's members and
/// contracts as the manifest held now names them; the live panels are filled by the script
/// from `/console/state`.
fn page(gw: &Gateway, viewer: &Viewer) -> String {
    let snapshot = gw.snapshot();
    let doc = snapshot.manifest.doc();
    let me = gw.member.as_str();
    let name = doc
        .members
        .iter()
        .find(|m| m.id == gw.member)
        .map_or(me, |m| m.name.as_str());
    let role = match (viewer.operator, viewer.auditor) {
        (true, true) => "operator and auditor",
        (true, false) => "operator",
        _ => "auditor",
    };
    let mut members = String::new();
    for m in &doc.members {
        let own = if m.id == gw.member {
            " <span class=\"tag\">this gateway</span>"
        } else {
            ""
        };
        members.push_str(&format!(
            "<tr data-member=\"{id}\"><td><b>{name}</b>{own}<br><code>{id}</code></td><td><code>{url}</code></td>\
             <td data-col=\"breaker\">–</td><td data-col=\"manifest\">–</td><td data-col=\"witnessed\">–</td><td data-col=\"traffic\">–</td></tr>\n",
            id = escape(m.id.as_str()),
            name = escape(&m.name),
            url = escape(&m.gateway),
        ));
    }
    let mut contracts = String::new();
    for c in &doc.contracts {
        let consumers: Vec<String> = c
            .consumers
            .iter()
            .map(|k| {
                format!(
                    "<code>{}</code> for {}",
                    escape(k.member.as_str()),
                    escape(&k.purposes.join(", "))
                )
            })
            .collect();
        let mark = if c.provider == gw.member {
            " class=\"own\""
        } else {
            ""
        };
        contracts.push_str(&format!(
            "<tr{mark}><td><code>{id}/{v}</code></td><td><code>{p}</code></td><td>{consumers}</td><td class=\"num\">{rate}/s, burst {burst}</td></tr>\n",
            id = escape(&c.id),
            v = escape(&c.version),
            p = escape(c.provider.as_str()),
            consumers = if consumers.is_empty() { "none".to_owned() } else { consumers.join("<br>") },
            rate = c.rate.per_second,
            burst = c.rate.burst,
        ));
    }
    let search = if viewer.auditor {
        "<form id=\"search\" autocomplete=\"off\"><input id=\"search-id\" name=\"exchange_id\" \
         placeholder=\"exchange id, e.g. 0193…\" maxlength=\"128\" spellcheck=\"false\">\
         <button type=\"submit\">Find records and proof</button></form>\
         <div id=\"search-result\" class=\"result\"></div>"
            .to_owned()
    } else {
        format!(
            "<p class=\"note\" id=\"search-note\">Searching the audit log needs an auditor identity: \
             <code>{}</code> is not on this gateway's <code>admin.auditors</code>. Open the command \
             centre as an auditor (<code>simpul console --member {} --as auditor:{}:NAME</code>).</p>",
            escape(&viewer.identity),
            escape(me),
            escape(me)
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} · Simpul command centre</title>
<link rel="stylesheet" href="/console/assets/vendor/uplot/uPlot.min.css">
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/vendor/uplot/uPlot.iife.min.js" defer></script>
<script src="/console/assets/console.js" defer></script>
</head>
<body data-member="{me}" data-auditor="{auditor}">
<header>
  <div class="brand"><span class="logo">◉</span> Simpul <span class="muted">command centre</span></div>
  <div class="who"><h1>{name}</h1><code>{me}</code> <span class="muted">at</span> <code>{instance}</code></div>
  <div class="viewer"><span class="muted">signed in as {role}</span><br><code id="viewer">{identity}</code></div>
</header>
<noscript><p class="note">The live panels need JavaScript; the federation below is as the gateway holds it now.</p></noscript>
<section class="pills" id="pills">
  <span class="pill" id="pill-manifest">manifest serial <b>{serial}</b>, expires {expires}</span>
  <span class="pill" id="pill-audit">audit log</span>
  <span class="pill" id="pill-updated">waiting for the first update…</span>
</section>
<section class="tiles" id="tiles"></section>
<section class="grid two">
  <article class="card"><h2>Exchanges per second</h2><div class="chart" id="chart-rate"></div></article>
  <article class="card"><h2>Latency <span class="muted">(ms, over the last poll)</span></h2><div class="chart" id="chart-latency"></div></article>
</section>
<section class="grid">
  <article class="card"><h2>Exchanges by contract and peer</h2>
    <table id="exchanges"><thead><tr><th>contract</th><th>peer</th><th>role</th><th class="num">answered</th><th class="num">refused</th><th class="num">per second</th><th>refusals by reason</th></tr></thead><tbody></tbody></table>
  </article>
</section>
<section class="grid two">
  <article class="card"><h2>Refusals by reason</h2>
    <table id="refusals"><thead><tr><th>reason</th><th>where</th><th class="num">count</th></tr></thead><tbody></tbody></table>
  </article>
  <article class="card"><h2>Latency percentiles <span class="muted">(since start)</span></h2>
    <table id="latency"><thead><tr><th>contract</th><th>role</th><th class="num">count</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th></tr></thead><tbody></tbody></table>
  </article>
</section>
<section class="grid two">
  <article class="card"><h2>Cache and limits</h2><dl id="cache"></dl>
    <table id="limits"><thead><tr><th>contract</th><th class="num">cache hits</th><th class="num">misses</th><th class="num">admitted</th><th class="num">rate-limited</th><th class="num">bulkhead</th></tr></thead><tbody></tbody></table>
  </article>
  <article class="card"><h2>Connections</h2>
    <table id="connections"><thead><tr><th>listener</th><th class="num">open</th><th class="num">handshakes</th><th class="num">failed</th><th class="num">timed out</th></tr></thead><tbody></tbody></table>
  </article>
</section>
<section class="grid two">
  <article class="card"><h2>Audit log</h2><dl id="audit"></dl></article>
  <article class="card"><h2>Partners' logs <span class="muted">(witnessed)</span></h2>
    <table id="witness"><thead><tr><th>member</th><th class="num">tree size</th><th>signed</th><th>received</th><th>state</th></tr></thead><tbody></tbody></table>
  </article>
</section>
<section class="grid">
  <article class="card"><h2>Change notifications <span class="muted">(events this gateway delivers, and the webhooks it posts to)</span></h2>
    <table id="events"><thead><tr><th>subscription or webhook</th><th class="num">backlog</th><th class="num">lag</th><th>last delivered</th><th>state</th></tr></thead><tbody></tbody></table>
  </article>
</section>
<section class="grid">
  <article class="card"><h2>Federation <span class="muted">{federation}, manifest serial <span id="serial">{serial}</span>, issued {issued}, expires <span id="expires">{expires}</span></span></h2>
    <table id="members"><thead><tr><th>member</th><th>gateway</th><th>breaker</th><th>manifest it last stated</th><th>its log, witnessed</th><th>exchanges with it</th></tr></thead><tbody>
{members}</tbody></table>
    <h3>Contracts and grants</h3>
    <table id="contracts"><thead><tr><th>contract</th><th>provider</th><th>who may ask, for what</th><th class="num">rate per consumer</th></tr></thead><tbody>
{contracts}</tbody></table>
  </article>
</section>
<section class="grid">
  <article class="card"><h2>Search the audit log by exchange id <span class="muted">(records and inclusion proofs; no personal data)</span></h2>
{search}
  </article>
</section>
<footer>Numbers from this gateway's own Prometheus series (<code>/metrics</code>) and state, polled every 2 s. Charts: uPlot (MIT), served by the gateway.</footer>
</body>
</html>
"#,
        name = escape(name),
        me = escape(me),
        auditor = viewer.auditor,
        instance = escape(&gw.labels.instance),
        role = role,
        identity = escape(&viewer.identity),
        serial = doc.serial,
        issued = contracts::utc(doc.issued_at),
        expires = contracts::utc(doc.expires_at),
        federation = escape(&doc.federation),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn every_asset_is_embedded_and_the_page_loads_only_them() {
        for (name, media, body) in ASSETS {
            assert!(!body.is_empty(), "{name}");
            assert!(media.contains('/'), "{name}");
        }
        // The page names its script and style by path: they must be among the assets.
        for path in [
            "console.js",
            "console.css",
            "vendor/uplot/uPlot.iife.min.js",
            "vendor/uplot/uPlot.min.css",
        ] {
            assert!(ASSETS.iter().any(|(n, _, _)| *n == path), "{path}");
        }
    }
}
