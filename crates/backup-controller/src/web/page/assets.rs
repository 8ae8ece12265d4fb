//! The page's only style and script, inline in every page, and the Content-Security-Policy
//! that admits exactly these two by their SHA-256: no other script runs on the page, not an
//! injected `<script>`, not an `onclick=` attribute, not a `javascript:` link, and nothing
//! loads from anywhere else.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The page's style.
pub const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\
header{background:#1d2430;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center}\
header a{color:#fff}main{padding:1rem 1.5rem;max-width:72rem}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}\
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e3e6ea}th{background:#eef0f3}\
.bad{color:#b42318;font-weight:600}.ok{color:#067647}.muted{color:#667085}\
button{font:inherit;padding:.25rem .7rem;border:1px solid #98a2b3;border-radius:4px;background:#fff;cursor:pointer}\
button:focus,a:focus,textarea:focus{outline:3px solid #84adff}\
.danger{border-color:#b42318;color:#b42318}form.inline{display:inline}\
textarea{width:100%;max-width:40rem;font-family:monospace}.error{background:#fef3f2;border:1px solid #fda29b;padding:.5rem 1rem}";

/// The page's script: asks before a form marked `data-confirm` is sent (deleting a backup),
/// and on a cluster's page follows the project's `progress` events, moving the cluster's
/// progress bars and reloading the page when one of its runs starts or ends (so its backup
/// appears in the list).
pub const SCRIPT: &str = "(function(){\
document.querySelectorAll('form[data-confirm]').forEach(function(f){\
f.addEventListener('submit',function(e){if(!confirm(f.dataset.confirm))e.preventDefault();});});\
var root=document.getElementById('live');if(!root)return;\
var cluster=root.dataset.cluster,source=new EventSource(root.dataset.events);\
function running(p){return p==='New'||p==='InProgress';}\
source.addEventListener('progress',function(e){var d=JSON.parse(e.data);\
if(d.kind!=='ClusterBackup')return;(d.clusters||[]).forEach(function(c){\
var run=c.lastBackup;if(c.cluster!==cluster||!run)return;\
var row=root.querySelector('[data-run=\"'+CSS.escape(run.name)+'\"]');\
if(!row){if(running(run.phase)){source.close();location.reload();}return;}\
if(!running(run.phase)){source.close();location.reload();return;}\
var bar=row.querySelector('progress'),done=run.itemsBackedUp||0,total=run.totalItems||0;\
bar.max=Math.max(total,1);bar.value=done;\
row.querySelector('.count').textContent=done+' of '+total+' items';});});})();";

/// The policy every response carries: the page's own style and script by hash, its event
/// stream and forms to itself, no frames around it, no base to re-point its links.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        digest(SCRIPT),
        digest(STYLE)
    )
});

fn digest(text: &str) -> String {
    STANDARD.encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_hashes_of_exactly_this_style_and_script() {
        let policy = CONTENT_SECURITY_POLICY.as_str();
        // The hash of `alert(1)`, computed elsewhere: the digest is the one browsers compute.
        assert_eq!(
            digest("alert(1)"),
            "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        assert!(policy.contains(&format!("script-src 'sha256-{}'", digest(SCRIPT))));
        assert!(policy.contains(&format!("style-src 'sha256-{}'", digest(STYLE))));
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}
