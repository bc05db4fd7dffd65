//! `convergio keys` for real (issue #4): the binary serves, the CLI issues a
//! scoped key (shown once), the key authenticates requests as its subject,
//! its scope decides what it may administer, `keys list` never shows a
//! secret, and `keys revoke` makes the key fail with 401.

mod support;

use support::{cli, start};

/// Status of `GET path` with `key` as the bearer.
async fn status_with(base: &str, path: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_issued_scoped_listed_and_revoked_through_the_cli() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));

    let (ok, stdout, stderr) = cli(
        at,
        &[
            "keys",
            "issue",
            "--subject",
            "ci-bot",
            "--org",
            "acme.example",
        ],
    );
    assert!(ok, "{stderr}");
    let plain_key = stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(plain_key.starts_with("cvg_"), "{stdout}");
    let (ok, stdout, stderr) = cli(
        at,
        &[
            "keys",
            "issue",
            "--subject",
            "ops",
            "--org",
            "acme.example",
            "--scope",
            "admin",
        ],
    );
    assert!(ok, "{stderr}");
    let admin_key = stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(admin_key.starts_with("cvg_"), "{stdout}");

    // Both authenticate; only the admin-scoped one administers keys.
    assert_eq!(
        status_with(&server.base, "/v1/agents", &plain_key).await,
        200
    );
    assert_eq!(
        status_with(&server.base, "/v1/api-keys", &plain_key).await,
        403
    );
    assert_eq!(
        status_with(&server.base, "/v1/api-keys", &admin_key).await,
        200
    );
    let forged = format!("{}x", &plain_key[..plain_key.len() - 1]);
    assert_eq!(status_with(&server.base, "/v1/agents", &forged).await, 401);

    let (ok, listing, stderr) = cli(at, &["keys", "list"]);
    assert!(ok, "{stderr}");
    assert!(
        listing.contains("ci-bot") && listing.contains("ops"),
        "{listing}"
    );
    let secret = plain_key.rsplit('_').next().unwrap_or_default();
    assert!(
        !listing.contains(secret),
        "list never shows a secret: {listing}"
    );
    let id = plain_key
        .strip_prefix("cvg_")
        .and_then(|rest| rest.split('_').next())
        .expect("key id")
        .to_owned();
    assert!(listing.contains(&id), "{listing}");

    let (ok, stdout, stderr) = cli(at, &["keys", "revoke", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&id), "{stdout}");
    let (_, listing, _) = cli(at, &["keys", "list"]);
    assert!(listing.contains("revoked"), "{listing}");
    // Revoking on this replica drops its cached verification at once.
    assert_eq!(
        status_with(&server.base, "/v1/agents", &plain_key).await,
        401
    );
    assert_eq!(
        status_with(&server.base, "/v1/api-keys", &admin_key).await,
        200
    );

    let (ok, _, stderr) = cli(at, &["keys", "revoke", "no-such-key"]);
    assert!(!ok, "revoking an unknown key fails");
    assert!(
        stderr.contains("404") || stderr.to_lowercase().contains("not found"),
        "{stderr}"
    );
}
