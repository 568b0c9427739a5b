//! LookupIds: answers without writing.

use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn known_identifiers_have_their_id_and_unknown_ones_have_none_in_request_order() {
    let app = spawn_app().await;
    let minted = app
        .mint(vec![item(work("known"))])
        .await
        .unwrap()
        .ids
        .remove(0);

    let response = app
        .lookup(vec![work("unknown"), work("known"), work("unknown")])
        .await
        .unwrap();

    let ids: Vec<_> = response
        .results
        .iter()
        .map(|r| r.canonical_id.clone())
        .collect();
    assert_eq!(ids, [None, Some(minted.canonical_id), None]);
    assert_eq!(response.results[0].source_identifier, Some(work("unknown")));
}

#[tokio::test]
async fn lookup_never_writes() {
    let app = spawn_app().await;
    app.lookup((0..100).map(|i| work(&format!("w{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn a_malformed_lookup_names_the_path() {
    let app = spawn_app().await;
    let status = app
        .lookup(vec![work("ok"), sid("t", "", "v")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "source_identifiers[1].ontology_type: must not be empty"
    );
}
