//! The HTML report: one self-contained page rendered from the report model.

use super::Report;

/// `s` as HTML text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report pages' style sheet (the diff page uses it too).
pub const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;color:#fff;font-weight:600}
.v-conformant{background:#1a7f37}.v-nonconformant{background:#cf222e}.v-inconclusive,.v-incomplete{background:#9a6700}
table{border-collapse:collapse;width:100%;margin-top:12px}
th,td{border-bottom:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
#checks{table-layout:fixed}
td.d{overflow-wrap:anywhere}
th{background:#f6f8fa}
.id{font-family:ui-monospace,monospace;overflow-wrap:anywhere}
.counts span{margin-right:10px;font-weight:600}
.o{font-weight:600;white-space:nowrap}
.o-pass{color:#1a7f37}.o-warn{color:#9a6700}.o-skip,.o-inconclusive{color:#57606a}
.o-fail,.o-crash,.o-timeout{color:#cf222e}
.identity td:first-child{color:#57606a;white-space:nowrap}
.filters button{margin:0 4px 4px 0;padding:3px 10px;border:1px solid #d0d7de;border-radius:4px;background:#f6f8fa;cursor:pointer}
.filters button.on{background:#0969da;color:#fff;border-color:#0969da}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:360px;font-size:12px;white-space:pre-wrap}
details summary{cursor:pointer}
"#;

const SCRIPT: &str = r#"
function applyFilter(o){
  document.querySelectorAll('tr.check').forEach(function(r){
    r.hidden = !(o === 'all' || r.dataset.outcome === o || (o === 'failing' && r.dataset.failing === '1'));
  });
  document.querySelectorAll('.filters button').forEach(function(b){
    b.classList.toggle('on', b.dataset.filter === o);
  });
  var shown = document.querySelectorAll('tr.check:not([hidden])').length;
  document.getElementById('shown').textContent = shown + ' shown';
}
function copyRepro(id){
  var text = document.getElementById(id).textContent;
  var done = function(){ var b = document.querySelector('[data-copy="' + id + '"]'); if (b) b.textContent = 'Copied'; };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(done, function(){ fallback(text); done(); });
  } else { fallback(text); done(); }
}
function fallback(text){
  var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t);
  t.select(); try { document.execCommand('copy'); } catch (e) {} document.body.removeChild(t);
}
window.addEventListener('DOMContentLoaded', function(){
  var m = location.hash.match(/filter=([a-z]+)/);
  applyFilter(m ? m[1] : 'all');
});
"#;

/// One self-contained page (no network fetches): verdict, identity, one row per check that
/// can be filtered by outcome, and each repro with a copy button.
pub fn to_html(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str(&format!(
        "<title>ntdsbcli-conform: {} {}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        esc(r.verdict.as_str()),
        esc(&r.library.path)
    ));
    s.push_str(&format!(
        "<h1>ntdsbcli-conform report</h1><p>Verdict: <span id=\"verdict\" class=\"verdict v-{v}\">{v}</span></p>",
        v = esc(r.verdict.as_str())
    ));
    s.push_str(&format!(
        "<p class=\"counts\" id=\"counts\">{} checks: ",
        r.checks.len()
    ));
    for (o, n) in r.outcome_counts() {
        s.push_str(&format!(
            "<span class=\"o-{o}\">{n} {o}</span>",
            o = o.as_str()
        ));
    }
    s.push_str("</p>");
    s.push_str("<table class=\"identity\">");
    for (k, v) in identity(r) {
        s.push_str(&format!("<tr><td>{k}</td><td>{v}</td></tr>"));
    }
    s.push_str("</table><h2>Checks</h2>");
    push_filters(&mut s);
    push_checks(&mut s, r);
    s.push_str("</body></html>\n");
    s
}

/// The rows of the identity table: what was run, against which library, with what.
fn identity(r: &Report) -> Vec<(&'static str, String)> {
    let c = &r.config;
    let mut identity = vec![
        ("library", esc(&r.library.path)),
        ("size", format!("{} bytes", r.library.size)),
        ("sha256", format!("<code>{}</code>", esc(&r.library.sha256))),
        (
            "exports",
            format!(
                "{}: {}",
                r.library.exports.len(),
                esc(&r.library.exports.join(", "))
            ),
        ),
        ("server", esc(&c.server)),
        (
            "tool",
            format!("{} {}", esc(&r.tool.name), esc(&r.tool.version)),
        ),
        (
            "configuration",
            format!(
                "seed {}, {} sequences, accept-hresult {}, call timeout {} ms",
                c.seed, c.sequences, c.accept_hresult, c.call_timeout_ms
            ),
        ),
        (
            "run",
            format!(
                "{} sequences, {} calls, {} workers, {:.2} s{}",
                r.stats.sequences,
                r.stats.calls,
                r.stats.workers,
                r.stats.wall_ms as f64 / 1000.0,
                if r.complete { "" } else { " (incomplete)" }
            ),
        ),
    ];
    for (k, v) in [
        ("mutant", &c.mutant),
        ("shard", &c.partition),
        ("user", &c.user),
    ] {
        if let Some(v) = v {
            identity.push((k, esc(v)));
        }
    }
    if let Some(v) = &r.library.version {
        identity.insert(3, ("version resource", esc(&v.summary())));
    }
    identity
}

/// The outcome filter buttons.
fn push_filters(s: &mut String) {
    s.push_str("<div class=\"filters\">");
    for f in [
        "all",
        "failing",
        "pass",
        "fail",
        "crash",
        "timeout",
        "warn",
        "skip",
        "inconclusive",
    ] {
        s.push_str(&format!(
            "<button data-filter=\"{f}\" onclick=\"applyFilter('{f}')\">{f}</button>"
        ));
    }
    s.push_str("<span id=\"shown\"></span></div>");
}

/// The checks table: one row per check, a repro with a copy button where there is one.
fn push_checks(s: &mut String, r: &Report) {
    s.push_str("<table id=\"checks\"><colgroup><col style=\"width:17em\"><col style=\"width:8em\"><col style=\"width:7em\"><col style=\"width:7em\"><col></colgroup><thead><tr><th>check</th><th>requirement</th><th>strength</th><th>outcome</th><th>detail</th></tr></thead><tbody>");
    for (i, ch) in r.checks.iter().enumerate() {
        let o = ch.outcome.as_str();
        let failing = ch.outcome.is_failure();
        s.push_str(&format!(
            "<tr class=\"check\" data-outcome=\"{o}\" data-failing=\"{}\"><td class=\"id\">{}</td><td>{}</td><td>{}</td><td class=\"o o-{o}\">{o}</td><td class=\"d\">{}",
            u8::from(failing),
            // A break after each dot when the id is wider than its column.
            esc(&ch.id).replace('.', ".<wbr>"),
            esc(&ch.requirement),
            ch.strength.as_str(),
            esc(&ch.detail)
        ));
        if let Some(repro) = &ch.repro {
            let id = format!("repro-{i}");
            s.push_str(&format!(
                "<details open><summary>C repro</summary><button data-copy=\"{id}\" onclick=\"copyRepro('{id}')\">Copy repro</button><pre id=\"{id}\">{}</pre></details>",
                esc(repro)
            ));
        }
        s.push_str("</td></tr>");
    }
    s.push_str("</tbody></table>");
}
