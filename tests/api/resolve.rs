//! ResolveCanonicalIds: from a canonical ID back to every identifier that carries it.

use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn a_canonical_id_resolves_to_its_minted_identifier_and_its_inheritors() {
    let app = spawn_app().await;
    let minted = app
        .mint(vec![item(work("b1"))])
        .await
        .unwrap()
        .ids
        .remove(0)
        .canonical_id;
    app.mint(vec![inheriting(
        sid("folio-instance", "Work", "f1"),
        work("b1"),
    )])
    .await
    .unwrap();

    let response = app
        .resolve(&[minted.as_str(), "zzzzzzzz", minted.as_str()])
        .await
        .unwrap();

    assert_eq!(response.resolutions.len(), 3);
    assert_eq!(response.resolutions[0].canonical_id, minted);
    assert_eq!(
        response.resolutions[0].source_identifiers,
        vec![work("b1"), sid("folio-instance", "Work", "f1")],
        "the identifier it was minted for first, then its inheritors"
    );
    assert!(
        response.resolutions[1].source_identifiers.is_empty(),
        "unknown IDs resolve to nothing"
    );
    assert_eq!(response.resolutions[2], response.resolutions[0]);
}

#[tokio::test]
async fn ids_not_in_the_canonical_format_are_invalid() {
    let app = spawn_app().await;
    for bad in ["", "abc", "abcdefg0", "ABCDEFGH", "1bcdefgh"] {
        let status = app.resolve(&["abcdefgh", bad]).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            status
                .message()
                .starts_with("canonical_ids[1]: must be 8 characters"),
            "{bad:?}: {}",
            status.message()
        );
    }
}
