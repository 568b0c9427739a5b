//! The public HTTP resolver (`serve --http-addr`), through a real HTTP client (reqwest) against a
//! real `idminter serve` process: routes, status codes, JSON bodies and errors, ETag/304, HEAD,
//! Cache-Control, CORS, and percent-encoded path segments.

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::lifecycle::{redirect, withdraw};

/// A server process with the resolver on, a gRPC client to set things up, and an HTTP client
/// that does not follow redirects (the 301 is what is tested).
struct Resolver {
    _db: TestDatabase,
    process: ServerProcess,
    grpc: IdMinterClient<Channel>,
    http: reqwest::Client,
}

impl Resolver {
    async fn start(extra: &[&str]) -> Self {
        let db = TestDatabase::migrated().await;
        let mut args = vec!["--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let process = ServerProcess::start(&db.url(), &args);
        let channel = process.channel().await;
        wait_for_health(
            &tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            ServingStatus::Serving,
        )
        .await;
        Self {
            _db: db,
            process,
            grpc: IdMinterClient::new(channel),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.process.http_addr.expect("the resolver is on")
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
        let response = request.send().await.expect("an HTTP answer");
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, headers, body)
    }

    async fn mint(&self, ids: Vec<pb::SourceIdentifier>) -> Vec<String> {
        self.grpc
            .clone()
            .mint_ids(pb::MintIdsRequest {
                items: ids.into_iter().map(item).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .ids
            .into_iter()
            .map(|m| m.canonical_id)
            .collect()
    }
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_id_is_200_with_its_identifiers_an_etag_cache_control_and_cors() {
    let resolver = Resolver::start(&[]).await;
    let id = resolver.mint(vec![work("b1")]).await.remove(0);

    let (status, headers, body) = resolver.get(&format!("/v1/canonical-ids/{id}")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["canonical_id"], id.as_str());
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(
        body["source_identifiers"],
        serde_json::json!([{"identifier_type": "sierra-system-number", "ontology_type": "Work", "value": "b1"}])
    );
    assert_eq!(header(&headers, header::CONTENT_TYPE), "application/json");
    assert_eq!(header(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(header(&headers, header::CACHE_CONTROL).contains("max-age="));
    assert!(header(&headers, header::ETAG).starts_with('"'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_id_is_301_to_its_final_target_a_withdrawn_one_410_and_an_unknown_one_404() {
    let resolver = Resolver::start(&[]).await;
    let ids = resolver
        .mint(vec![work("a"), work("b"), work("c"), work("w")])
        .await;
    let (a, b, c, w) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    redirect(&resolver.grpc, &[(a, b), (b, c)]).await.unwrap();
    withdraw(&resolver.grpc, &[w]).await.unwrap();

    let (status, headers, body) = resolver.get(&format!("/v1/canonical-ids/{a}")).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(&headers, header::LOCATION),
        format!("/v1/canonical-ids/{c}")
    );
    assert_eq!(body["status"], "REDIRECTED");
    assert_eq!(body["redirect_target"], c.as_str());
    assert_eq!(body["reason"], format!("merged {a} into {b}"));
    assert!(header(&headers, header::ETAG).starts_with('"'));
    assert!(header(&headers, header::CACHE_CONTROL).contains("max-age="));

    let (status, headers, body) = resolver.get(&format!("/v1/canonical-ids/{w}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["status"], "WITHDRAWN");
    assert_eq!(body["reason"], "record deleted at source");
    assert!(
        body["changed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert!(
        body.get("source_identifiers").is_none(),
        "a tombstone: {body}"
    );
    assert!(header(&headers, header::ETAG).starts_with('"'));

    let (status, headers, body) = resolver.get("/v1/canonical-ids/zzzzzzzz").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert_eq!(header(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_id_or_path_is_400_with_a_json_body_never_500() {
    let resolver = Resolver::start(&[]).await;
    for path in [
        "/v1/canonical-ids/0000",
        "/v1/canonical-ids/ABCDEFGH",
        "/v1/canonical-ids/abcdefgh/extra",
        "/v1/canonical-ids/%FF%FE",
        "/v1/canonical-ids/",
        "/v1/canonical-ids",
        "/v1/source-identifiers/only/two",
        "/v1/source-identifiers/a/b/c/d",
        "/v1/source-identifiers/a//c",
        "/v1/source-identifiers/a/b/%00",
        "/v1/source-identifiers/a/b/%C3%28",
    ] {
        let (status, headers, body) = resolver.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "bad_request", "{path}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}"
        );
        assert_eq!(header(&headers, header::CONTENT_TYPE), "application/json");
    }
    let (status, _, body) = resolver.get("/elsewhere").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, headers, body) = resolver
        .send(
            resolver
                .http
                .post(resolver.url("/v1/canonical-ids/abcdefgh")),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed");
    assert!(header(&headers, header::ALLOW).contains("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_if_none_match_is_304_and_head_answers_like_get_without_a_body() {
    let resolver = Resolver::start(&[]).await;
    let ids = resolver.mint(vec![work("a"), work("b")]).await;
    let path = format!("/v1/canonical-ids/{}", ids[0]);
    let (_, headers, _) = resolver.get(&path).await;
    let etag = header(&headers, header::ETAG).to_owned();

    let (status, headers, body) = resolver
        .send(
            resolver
                .http
                .get(resolver.url(&path))
                .header(header::IF_NONE_MATCH, &etag),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(body, Value::Null);
    assert_eq!(header(&headers, header::ETAG), etag);
    assert_eq!(header(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let (status, _, _) = resolver
        .send(
            resolver
                .http
                .get(resolver.url(&path))
                .header(header::IF_NONE_MATCH, "\"other\", W/".to_owned() + &etag),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_MODIFIED,
        "a list, and a weak comparison"
    );

    // The status changes: the old ETag no longer matches.
    redirect(&resolver.grpc, &[(&ids[0], &ids[1])])
        .await
        .unwrap();
    let (status, headers, _) = resolver
        .send(
            resolver
                .http
                .get(resolver.url(&path))
                .header(header::IF_NONE_MATCH, &etag),
        )
        .await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_ne!(header(&headers, header::ETAG), etag);

    let (status, headers, body) = resolver.send(resolver.http.head(resolver.url(&path))).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(body, Value::Null);
    assert!(header(&headers, header::ETAG).starts_with('"'));
    assert_eq!(
        header(&headers, header::LOCATION),
        format!("/v1/canonical-ids/{}", ids[1])
    );
    let (status, _, body) = resolver
        .send(resolver.http.head(resolver.url("/v1/canonical-ids/0")))
        .await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, Value::Null));

    let (status, headers, _) = resolver
        .send(
            resolver
                .http
                .request(reqwest::Method::OPTIONS, resolver.url(&path)),
        )
        .await;
    assert!(status.is_success(), "preflight: {status}");
    assert!(header(&headers, header::ACCESS_CONTROL_ALLOW_METHODS).contains("GET"));
    assert_eq!(header(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_identifier_segments_are_percent_decoded_so_values_may_hold_slashes_spaces_and_unicode()
 {
    let resolver = Resolver::start(&["--ontology-alias", "Person=Concept"]).await;
    let tricky = [
        sid("lc-subjects", "Concept", "sh85/123 x"),
        sid("label-derived", "Concept", "Économie / 経済 100%"),
        sid("sierra-system-number", "Work", "b1?x=1#frag"),
    ];
    let ids = resolver.mint(tricky.to_vec()).await;
    let encode = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    for (id, expected) in tricky.iter().zip(&ids) {
        let path = format!(
            "/v1/source-identifiers/{}/{}/{}",
            encode(&id.identifier_type),
            encode(&id.ontology_type),
            encode(&id.value)
        );
        let (status, headers, body) = resolver.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["canonical_id"], expected.as_str(), "{path}");
        assert_eq!(body["status"], "ACTIVE");
        assert_eq!(body["source_identifier"]["value"], id.value.as_str());
        assert!(body.get("redirect_target").is_none());
        assert!(header(&headers, header::ETAG).starts_with('"'));
    }
    // Aliases apply as in the gRPC API.
    let person = resolver
        .mint(vec![sid("lc-names", "Person", "n1")])
        .await
        .remove(0);
    let (status, _, body) = resolver
        .get("/v1/source-identifiers/lc-names/Person/n1")
        .await;
    assert_eq!(
        (status, body["canonical_id"].as_str()),
        (StatusCode::OK, Some(person.as_str()))
    );
    assert_eq!(body["source_identifier"]["ontology_type"], "Concept");

    redirect(&resolver.grpc, &[(&ids[0], &ids[1])])
        .await
        .unwrap();
    let (status, _, body) = resolver
        .get("/v1/source-identifiers/lc-subjects/Concept/sh85%2F123%20x")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "REDIRECTED");
    assert_eq!(body["redirect_target"], ids[1].as_str());

    let (status, _, body) = resolver
        .get("/v1/source-identifiers/lc-subjects/Concept/never")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_configured_the_resolver_needs_a_read_token_and_answers_privately() {
    use crate::fixtures::{TempDir, token_line};
    let dir = TempDir::new("resolver-tokens");
    let file = dir.write(
        "tokens",
        token_line("web", "read", "web-token") + &token_line("ops", "admin", "ops-token"),
    );
    let resolver = Resolver::start(&["--auth-tokens", file.to_str().unwrap()]).await;
    let ids: Vec<String> = resolver
        .grpc
        .clone()
        .mint_ids(crate::fixtures::with_token(
            pb::MintIdsRequest {
                items: vec![item(work("t1"))],
            },
            "ops-token",
        ))
        .await
        .unwrap()
        .into_inner()
        .ids
        .into_iter()
        .map(|m| m.canonical_id)
        .collect();
    let url = resolver.url(&format!("/v1/canonical-ids/{}", ids[0]));

    let (status, headers, body) = resolver.send(resolver.http.get(&url)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(header(&headers, header::WWW_AUTHENTICATE), "Bearer");
    let (status, _, _) = resolver
        .send(resolver.http.get(&url).bearer_auth("not-a-token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = resolver
        .send(
            resolver
                .http
                .get(&url)
                .header(header::AUTHORIZATION, "Basic d2ViOng="),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for token in ["web-token", "ops-token"] {
        let (status, headers, body) = resolver
            .send(resolver.http.get(&url).bearer_auth(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{token}: {body}");
        assert_eq!(body["canonical_id"], ids[0].as_str());
        assert!(header(&headers, header::CACHE_CONTROL).starts_with("private"));
    }
    let (status, _, _) = resolver
        .send(
            resolver
                .http
                .get(resolver.url("/v1/source-identifiers/sierra-system-number/Work/t1"))
                .bearer_auth("web-token"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
