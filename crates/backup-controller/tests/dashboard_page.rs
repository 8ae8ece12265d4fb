//! The dashboard's page in a real browser (headless Chromium through chromedriver): sign in
//! with a project user's token, see the fleet overview, a cluster's backups, a restore's plan
//! before it runs, the restore itself, runs appearing on an open page as they end (live, from
//! the event stream), a download whose SHA-256 is the manifest's, a delete; a viewer sees the project and nothing of
//! another one; forms without the session's CSRF token are refused, a sign-in form another
//! page made too; the session cookie shows nothing of the token; the Content-Security-Policy
//! admits the page's own script and style (the console stays free of errors, violations
//! included) and no injected one.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tests::TestNamespace;
use tests::browser::Browser;
use tests::controller::{
    ControllerProcess, LoopbackCertificate, Project, free_port, https_request, service_account,
};
use tests::env::shared;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_user_signs_in_sees_the_fleet_restores_and_deletes_in_the_browser() -> Result<()>
{
    let env = shared()?;
    let p = Project::create("page").await?;
    let c1 = env.client("c1").await?;
    let app = TestNamespace::create(&c1, "page-app").await?;
    let mut settings = ConfigMap::default();
    settings.metadata.name = Some("settings".into());
    Api::<ConfigMap>::namespaced(c1.clone(), &app.name)
        .create(&PostParams::default(), &settings)
        .await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"template": {"includedNamespaces": [app.name]}}}),
    )
    .await?;
    p.apply(json!({"kind": "ClusterBackup", "metadata": {"name": "hourly"},
        "spec": {"schedule": "0 * * * *", "paused": true, "template": {"includedNamespaces": [app.name]}}}))
        .await?;
    let editor = service_account(
        &p,
        "editor",
        json!([{"apiGroups": ["backupfleet.dev"],
                "resources": ["storagelocations", "managedclusters", "clusterbackups", "clusterrestores"],
                "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterbackups"], "verbs": ["patch", "delete"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterbackups/download"], "verbs": ["get"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterrestores"], "verbs": ["create"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["managedclusters"],
             "verbs": ["restore", "restore-privileged"]}]),
    )
    .await?;
    let viewer = service_account(
        &p,
        "viewer",
        json!([{"apiGroups": ["backupfleet.dev"],
                "resources": ["storagelocations", "managedclusters", "clusterbackups", "clusterrestores"],
                "verbs": ["get", "list", "watch"]}]),
    )
    .await?;
    // Another project, with a cluster whose name must never reach project A's users.
    let other = Project::create("page-other").await?;
    other
        .apply(other.cluster("hidden-cluster-b7", "c1", json!({})))
        .await?;
    let other_ns = other.name().to_string();
    let addr = format!("127.0.0.1:{}", free_port()?);
    // Served over TLS, as in a cluster: Chromium trusts the test's certificate.
    let certificate = LoopbackCertificate::new()?;
    let (cert, key) = (
        certificate.cert.display().to_string(),
        certificate.key.display().to_string(),
    );
    let controller = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "page",
        &[
            "--api-addr",
            &addr,
            "--api-tls-cert-file",
            &cert,
            "--api-tls-key-file",
            &key,
        ],
    )
    .await?;
    let backup = p
        .completed_run("once", Duration::from_secs(60), &controller)
        .await?;
    let ns = p.name().to_string();
    let base = format!("https://{addr}");
    let manifest = p
        .repository("c1")?
        .get_manifest(
            backup_core::BackupKind::Resources,
            &backup_storage::BackupName::new(&backup)?,
        )
        .await?;
    let recorded_sha256 = manifest
        .artifacts
        .iter()
        .find(|a| a.name.as_str() == format!("{backup}.tar.gz"))
        .context("no tarball in the manifest")?
        .sha256
        .clone();

    // Screenshots of each page, kept as test artifacts.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/dashboard");
    let checks = tokio::task::spawn_blocking(move || -> Result<()> {
        let browser = Browser::start_trusting(Some(&certificate.spki_sha256))?;
        let shot = |name: &str| browser.screenshot(&shots.join(format!("{name}.png")));
        // Signed out, everything leads to the sign-in form; a bad token is refused there.
        browser.goto(&format!("{base}/ui/projects/{ns}"))?;
        ensure!(browser.url()?.ends_with("/ui"), "{}", browser.url()?);
        let field = browser.find("#token")?;
        browser.type_into(&field, "not-a-token")?;
        browser.click(&browser.find("button[type=submit]")?)?;
        browser.wait_for_text("not accepted", Duration::from_secs(10))?;
        // The refusal's 401 is the only console error so far.
        let errors = browser.console_errors()?;
        ensure!(
            errors.len() == 1 && errors[0].contains("401"),
            "console errors: {errors:?}"
        );
        // A sign-in form another page made (login CSRF: signing the visitor in as the
        // attacker) is refused, and signs nobody in.
        browser.execute(&format!(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/ui/login'; const t = document.createElement('input'); \
             t.name = 'token'; t.value = '{editor}'; f.appendChild(t); \
             document.body.appendChild(f); f.submit();"
        ))?;
        browser.wait_for_text("not sent by this page", Duration::from_secs(10))?;
        let errors = browser.console_errors()?;
        ensure!(
            errors.iter().all(|e| e.contains("403")),
            "console errors: {errors:?}"
        );
        browser.goto(&format!("{base}/ui/projects"))?;
        ensure!(browser.url()?.ends_with("/ui"), "{}", browser.url()?);
        // Signed in with the project user's token.
        browser.goto(&format!("{base}/ui"))?;
        shot("sign-in")?;
        browser.type_into(&browser.find("#token")?, &editor)?;
        browser.click(&browser.find("button[type=submit]")?)?;
        let projects = browser.wait_for_text(&ns, Duration::from_secs(10))?;
        ensure!(
            projects.contains("system:serviceaccount"),
            "the user is named: {projects}"
        );
        // The session cookie: HttpOnly, SameSite=Strict, and nothing of the token in it.
        let cookies = browser.cookies()?;
        let session = cookies
            .iter()
            .find(|c| c["name"] == "__Host-backupfleet_session")
            .with_context(|| format!("no __Host- session cookie: {cookies:?}"))?;
        ensure!(
            session["httpOnly"] == true
                && session["secure"] == true
                && session["sameSite"] == "Strict"
                && session["path"] == "/",
            "{session}"
        );
        let value = session["value"].as_str().unwrap_or_default();
        ensure!(
            !editor
                .as_bytes()
                .windows(12)
                .any(|w| value.as_bytes().windows(12).any(|v| v == w)),
            "the cookie shows the token: {value}"
        );
        // Every answer carries the policy that admits the page's own script only, and is
        // kept in no cache.
        let headers = browser.execute(
            "return fetch(location.href).then(r => [r.headers.get('content-security-policy'), \
             r.headers.get('cache-control')]);",
        )?;
        let policy = headers[0].as_str().unwrap_or_default();
        ensure!(
            policy.contains("script-src 'sha256-")
                && policy.contains("frame-ancestors 'none'")
                && !policy.contains("unsafe")
                && headers[1] == "no-store",
            "{headers}"
        );

        // The overview: the cluster with its last good backup, the location, the schedules.
        browser.goto(&format!("{base}/ui/projects/{ns}"))?;
        let overview = browser.source()?;
        shot("overview")?;
        for text in ["c1", "main", "hourly", "Run now", &backup] {
            ensure!(
                overview.contains(text),
                "overview lacks {text:?}: {overview}"
            );
        }
        // A form without the session's CSRF token is refused.
        browser.execute(&format!(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/ui/projects/{ns}/clusterbackups/hourly/run'; \
             const i = document.createElement('input'); i.name = 'csrf'; i.value = 'forged'; \
             f.appendChild(i); document.body.appendChild(f); f.submit();"
        ))?;
        std::thread::sleep(Duration::from_millis(500));
        let forged = browser.source()?;
        ensure!(
            forged.contains("stale or was not sent by this page"),
            "{forged}"
        );

        // The cluster's backups; the restore's plan comes first, then the restore.
        browser.goto(&format!("{base}/ui/projects/{ns}/clusters/c1"))?;
        let cluster = browser.source()?;
        shot("cluster")?;
        ensure!(
            cluster.contains(&backup) && cluster.contains("Download"),
            "{cluster}"
        );
        let download = browser.find("a[href$='/download']")?;
        ensure!(!download.is_empty());
        // Sizes read as people read them, the exact count on hover.
        let size = browser.execute(
            "const c = document.querySelector('td.size'); return [c.textContent, c.title];",
        )?;
        let (shown, exact) = (
            size[0].as_str().unwrap_or(""),
            size[1].as_str().unwrap_or(""),
        );
        ensure!(
            [" B", " KiB", " MiB"].iter().any(|u| shown.ends_with(u)) && exact.ends_with(" bytes"),
            "size cell {size}"
        );
        // What the page's download link delivers is the stored tarball: its SHA-256, computed
        // in the browser, is the one the manifest records.
        let downloaded = browser.execute(&format!(
            "return fetch('/ui/projects/{ns}/clusters/c1/backups/{backup}/download')\
             .then(r => r.arrayBuffer()).then(b => crypto.subtle.digest('SHA-256', b))\
             .then(d => Array.from(new Uint8Array(d))\
             .map(x => x.toString(16).padStart(2, '0')).join(''));"
        ))?;
        ensure!(
            downloaded == json!(recorded_sha256),
            "downloaded {downloaded}, recorded {recorded_sha256}"
        );
        browser.click_on("form[action$='/plan'] button", Duration::from_secs(10))?;
        let plan = browser.wait_for_text("Dry run of restoring", Duration::from_secs(60))?;
        ensure!(
            plan.contains("to create") && plan.contains("Restore now"),
            "{plan}"
        );
        shot("restore-plan")?;
        browser.click(&browser.find("form[action$='/restore'] button")?)?;
        browser.wait_for_text("Restores of", Duration::from_secs(10))?;
        ensure!(browser.url()?.ends_with("/restores"), "{}", browser.url()?);
        browser.reload_until_text("Completed", Duration::from_secs(60))?;
        shot("restores")?;

        // Run the backup now from the overview. The cluster page follows the project's events,
        // so the run appears there by itself once it is stored: the test never reloads it.
        browser.goto(&format!("{base}/ui/projects/{ns}"))?;
        // The form's answer is a new document: mark this one to tell when it has been replaced,
        // so the next navigation does not race the form's.
        browser.execute("document.body.dataset.submitted = 'no'")?;
        browser.click_on(
            "form[action$='/clusterbackups/once/run'] button",
            Duration::from_secs(10),
        )?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // A script may fail while the old document unloads; that is "not yet" too.
            match browser.execute("return document.body.dataset.submitted || null") {
                Ok(marker) if marker != json!("no") => break,
                _ => {}
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the run-now form was never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        browser.wait_for_text(&format!("Project {ns}"), Duration::from_secs(10))?;
        browser.goto(&format!("{base}/ui/projects/{ns}/clusters/c1"))?;
        ensure!(
            browser.url()?.ends_with("/clusters/c1"),
            "{}",
            browser.url()?
        );
        let ran = browser.wait_for_text(&format!("{backup}-"), Duration::from_secs(60))?;
        ensure!(ran.contains("Completed"), "{ran}");
        // A run started elsewhere (here through the API) while the page is open shows up the
        // same way: the page's script sees it start and end in the event stream.
        let runs = |page: &str| page.matches(&format!("/backups/{backup}-")).count();
        let before = runs(&browser.source()?);
        let (code, body) = https_request(
            addr.parse::<std::net::SocketAddr>()?,
            &certificate.pem,
            "POST",
            &format!("/api/v1/namespaces/{ns}/clusterbackups/once/run"),
            Some(&editor),
            None,
        )?;
        ensure!(
            code == 200,
            "run-now: {code} {}",
            String::from_utf8_lossy(&body)
        );
        // Settled: the run is listed and no run is shown running any more (a page that still
        // shows one reloads itself when it ends, which would pull the next click's button
        // away).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let page = browser.source()?;
            if runs(&page) > before && !page.contains("<p data-run=") {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the page never showed the API's run settled: {page}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        // Delete the first backup, after the confirmation dialog.
        // The page reloads itself when it hears of a run starting or ending, which can still
        // happen after it looked settled: click what is there then.
        let delete = format!("form[action$='/backups/{backup}/delete'] button");
        browser.click_on(&delete, Duration::from_secs(10))?;
        let asked = browser.accept_dialog()?;
        ensure!(asked.contains(&backup), "{asked}");
        // As long as the other waits here: beside the whole suite on 2 cores, the delete and
        // the listing after it took over 10 s once.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let page = browser.source()?;
            if !page.contains(&format!("/backups/{backup}/delete")) && page.contains("Cluster c1") {
                ensure!(
                    page.contains(&format!("{backup}-")),
                    "the other run stays: {page}"
                );
                break;
            }
            ensure!(std::time::Instant::now() < deadline, "still listed: {page}");
            std::thread::sleep(Duration::from_millis(200));
        }

        // A viewer of the project sees its clusters and backups, and nothing of the other
        // project: not in the project list, and its page answers as if it did not exist.
        browser.click_on("form[action='/ui/logout'] button", Duration::from_secs(10))?;
        browser.wait_for_text("token", Duration::from_secs(10))?;
        browser.type_into(&browser.find("#token")?, &viewer)?;
        browser.click(&browser.find("button[type=submit]")?)?;
        let projects = browser.wait_for_text(&ns, Duration::from_secs(10))?;
        ensure!(!projects.contains(&other_ns), "{projects}");
        browser.goto(&format!("{base}/ui/projects/{ns}/clusters/c1"))?;
        let seen = browser.source()?;
        ensure!(seen.contains(&format!("{backup}-")), "{seen}");
        browser.goto(&format!("{base}/ui/projects/{other_ns}"))?;
        let hidden = browser.source()?;
        shot("viewer-other-project")?;
        ensure!(
            hidden.contains("may not see it") && !hidden.contains("hidden-cluster-b7"),
            "{hidden}"
        );

        // Everything a user did: no console error (Chromium may report the forged form's
        // 403 once more when its page is left; that one is expected, as is the 404 of the
        // other project's page).
        let errors: Vec<String> = browser
            .console_errors()?
            .into_iter()
            .filter(|e| !(e.contains("403") && e.contains("/hourly/run")))
            .filter(|e| !(e.contains("404") && e.contains(&other_ns)))
            .collect();
        ensure!(errors.is_empty(), "console errors: {errors:?}");
        // An injected inline script does not run (it is not the page's, by hash); the page's
        // own did (its progress and confirm dialogs above).
        let ran = browser.execute(
            "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; \
             document.body.appendChild(s); return window.injected === 1;",
        )?;
        ensure!(ran == false, "an injected script ran");
        Ok(())
    })
    .await?;
    drop(controller);
    app.delete().await?;
    other.delete().await?;
    p.delete().await?;
    checks
}
