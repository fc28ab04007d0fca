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
