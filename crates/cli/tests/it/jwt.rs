//! JWT bearer tokens (`--jwt-jwks` and friends) beside API keys, through
//! `weir up` as a user starts it: RS256 and ES256 tokens from a JWKS served
//! by URL (as an identity provider does), scopes and tenant from claims,
//! each refusal a 401 that says why, a rotated key picked up by itself, and
//! no token in any log line.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "weir-api";

/// A signing key made for the test, and its public JWK.
struct SigningKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

/// An RSA key from `openssl genpkey` (fast, where generating one in a
/// debug build is not).
fn rsa_key(dir: &std::path::Path, kid: &str) -> SigningKey {
    let path = dir.join(format!("{kid}.pem"));
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let pem = std::fs::read_to_string(&path).unwrap();
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    SigningKey {
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                    "n": b64(private.n()), "e": b64(private.e())}),
    }
}

fn ec_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(
        (point.len(), point[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    SigningKey {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token signed by `key` (under `kid`, which may be another key's) with
/// `claims` over sensible defaults.
fn token(key: &SigningKey, kid: &str, claims: Value) -> String {
    let mut body = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-orders",
                          "exp": now() + 300, "scope": "submit read"});
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.into());
    encode(&header, &body, &key.encoding).unwrap()
}

/// Serves whatever JWKS `keys` holds at `/jwks`, as an identity provider.
async fn jwks_server(keys: Arc<Mutex<Value>>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_tokens_are_verified_scoped_and_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa1, rsa2, ec1) = (
        rsa_key(dir.path(), "rsa-1"),
        rsa_key(dir.path(), "rsa-2"),
        ec_key("ec-1"),
    );
    let served = Arc::new(Mutex::new(json!({"keys": [rsa1.jwk, ec1.jwk]})));
    let jwks = jwks_server(served.clone()).await;
    let (api_key, entry) =
        weir_api::api_keys::ApiKeys::generate("ci", &[weir_api::api_keys::Scope::Submit], None);
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, entry).unwrap();

    let data = dir.path().join("data");
    let (mut child, mut lines, rx, base) = crate::processes::start_up_keeping_every_line(&[
        "--jwt-jwks".as_ref(),
        jwks.as_ref(),
        "--jwt-issuer".as_ref(),
        ISSUER.as_ref(),
        "--jwt-audience".as_ref(),
        AUDIENCE.as_ref(),
        "--jwt-jwks-refresh".as_ref(),
        "200ms".as_ref(),
        "--api-keys".as_ref(),
        keys_file.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, credential: &str| {
        let req = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(credential);
        let req = if method == reqwest::Method::POST {
            req.json(&json!({"string": "jwt"}))
        } else {
            req
        };
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let mut tokens = Vec::new();

    // RS256, scopes in a space-separated `scope`, a tenant.
    let acme = token(&rsa1, "rsa-1", json!({"tenant": "acme"}));
    tokens.push(acme.clone());
    let (status, body) = call(post.clone(), "/hash/md5", &acme).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_string();
    let (status, body) = call(get.clone(), &format!("/tasks/{id}"), &acme).await;
    assert_eq!(status, 200, "{body}");
    // Another tenant's token does not see it.
    let other = token(&rsa1, "rsa-1", json!({"tenant": "other"}));
    tokens.push(other.clone());
    let (status, _) = call(get.clone(), &format!("/tasks/{id}"), &other).await;
    assert_eq!(status, 404);

    // ES256, scopes as an array: read only.
    let reader = token(&ec1, "ec-1", json!({"scope": ["read", "profile"]}));
    tokens.push(reader.clone());
    let (status, body) = call(get.clone(), "/tasks", &reader).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(post.clone(), "/hash/md5", &reader).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("missing_scope")),
        "{body}"
    );

    // Each refusal is a 401 naming its reason.
    let hs = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300, "scope": "read"});
        encode(&h, &claims, &EncodingKey::from_secret(b"guessable")).unwrap()
    };
    for (bad, reason) in [
        (
            token(&rsa2, "rsa-1", json!({})),
            "signature does not verify",
        ),
        (
            token(&rsa1, "rsa-1", json!({"exp": now() - 600})),
            "expired",
        ),
        (
            token(&rsa1, "rsa-1", json!({"aud": "another-api"})),
            "another audience",
        ),
        (
            token(&ec1, "ec-1", json!({"iss": "https://evil.test/"})),
            "another issuer",
        ),
        (token(&rsa2, "rsa-2", json!({})), "no key of the JWKS"),
        (hs, "RS256 and ES256"),
    ] {
        tokens.push(bad.clone());
        let (status, body) = call(get.clone(), "/tasks", &bad).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("invalid_token")),
            "{reason}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message:?} lacks {reason:?}");
        assert!(!message.contains(&bad), "the answer echoes the token");
    }

    // API keys keep working beside tokens.
    let (status, body) = call(post.clone(), "/hash/sha256", &api_key).await;
    assert_eq!(status, 202, "{body}");

    // The provider rotates in rsa-2: picked up without a restart.
    served.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(rsa2.jwk.clone());
    let rotated = token(&rsa2, "rsa-2", json!({}));
    tokens.push(rotated.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(get.clone(), "/tasks", &rotated).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key was never taken: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    lines.extend(rx.try_iter());
    assert!(lines.len() > 10, "too few log lines to tell: {lines:?}");
    for line in &lines {
        for t in &tokens {
            assert!(!line.contains(t.as_str()), "a token in the log: {line}");
            // Nor its signature alone.
            let signature = t.rsplit('.').next().unwrap();
            assert!(
                !line.contains(signature),
                "a token's signature in the log: {line}"
            );
        }
    }
}

/// Bad JWT settings stop the node at start, with one line naming the key.
#[test]
fn bad_jwt_settings_stop_the_node_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("weir.db").display());
    let jwks = dir.path().join("jwks.json");
    let check = |extra: &[&str]| {
        let out = crate::processes::run_weir(
            &[&["api", "--check-config", "--database-url", &db][..], extra].concat(),
        );
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let jwks_arg = jwks.to_str().unwrap();
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let no_audience = check(&["--jwt-jwks", jwks_arg, "--jwt-issuer", ISSUER]);
    assert!(no_audience.contains("jwt-audience"), "{no_audience}");
    let full = [
        "--jwt-jwks",
        jwks_arg,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ];
    let empty = check(&full);
    assert!(
        empty.contains("jwt-jwks") && empty.contains("no RS256 or ES256 key"),
        "{empty}"
    );
    std::fs::write(&jwks, "not json").unwrap();
    let garbage = check(&full);
    assert!(
        garbage.contains("jwt-jwks") && garbage.contains("not a JWKS"),
        "{garbage}"
    );
    for message in [no_audience, empty, garbage] {
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}
