mod common;
use leakproof::domain::Rejection;

both_backends!(publish_and_read_back, |env| {
    let token = env.user_token("alice", "publish-new publish-update").await;
    env.registry
        .publish(&token, &common::publish("serde", "1.0.0"))
        .await
        .unwrap();
    env.registry
        .publish(&token, &common::publish("Serde", "1.0.1"))
        .await
        .unwrap();
    assert_rejected!(
        env.registry
            .publish(&token, &common::publish("serde", "1.0.1"))
            .await,
        Rejection::VersionExists
    );
    let versions = env.registry.versions("serde").await.unwrap();
    assert_eq!(versions.len(), 2);
});

// The fuzzer's setup is run once and restored per input: `restore` must put back every row,
// ids included, as `snapshot` saw them, whatever happened since.
both_backends!(snapshot_and_restore_put_every_row_back, |env| {
    use leakproof::db::scratch;
    let token = env.user_token("alice", "publish-new publish-update").await;
    env.registry
        .publish(&token, &common::publish("serde", "1.0.0"))
        .await
        .unwrap();
    scratch::snapshot(&env.db).await.unwrap();
    env.registry
        .publish(&token, &common::publish("serde", "1.0.1"))
        .await
        .unwrap();
    env.registry
        .publish(&token, &common::publish("tokio", "1.0.0"))
        .await
        .unwrap();
    scratch::restore(&env.db).await.unwrap();
    let versions = env.registry.versions("serde").await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(
        env.registry.versions("tokio").await.is_err(),
        "tokio came back"
    );
    // The token issued before the snapshot still works: its grant and user came back too.
    env.registry
        .publish(&token, &common::publish("serde", "1.0.2"))
        .await
        .unwrap();
    scratch::restore(&env.db).await.unwrap();
    assert_eq!(env.registry.versions("serde").await.unwrap().len(), 1);
    // A reset empties the tables but keeps the snapshot.
    scratch::reset(&env.db).await.unwrap();
    assert!(env.registry.versions("serde").await.is_err());
    scratch::restore(&env.db).await.unwrap();
    assert_eq!(env.registry.versions("serde").await.unwrap().len(), 1);
});

// A migration that adds a table must add it to `scratch::reset` too, or harness cases would
// inherit each other's rows.
both_backends!(reset_knows_every_table, |env| {
    use leakproof::db::scratch;
    let tables = scratch::tables(&env.db).await.unwrap();
    assert!(tables.contains(&"oauth_tokens".to_owned()), "{tables:?}");
    assert_eq!(tables, scratch::reset_tables());
    // Snapshot tables are the harness's, not the schema's.
    scratch::snapshot(&env.db).await.unwrap();
    assert_eq!(scratch::tables(&env.db).await.unwrap(), tables);
});
