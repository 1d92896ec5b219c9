//! The vector backend through the real daemon: chosen by `vector.backend` and what the server
//! has, reported by the status and a metric, converted either way with nothing lost, sizes
//! above what `vector` HNSW indexes kept as `halfvec`, and a configured pgvector the server
//! cannot give refused at start with the reason. The suite runs on both servers
//! (`MEMWARDEN_TEST_PG=15|18`): each test checks what its server can show.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::harness::{count, eventually, Daemon, TestDb};

/// Whether this server can give pgvector; on the PostgreSQL 18 run it must.
async fn has_pgvector(pool: &PgPool) -> bool {
    let available = count(
        pool,
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'",
    )
    .await
        > 0;
    if std::env::var("MEMWARDEN_TEST_PG").as_deref() == Ok("18") {
        assert!(
            available,
            "MEMWARDEN_TEST_PG=18 runs on a server with pgvector"
        );
    }
    available
}

async fn column_type(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'memory_embeddings'::regclass AND attname = 'embedding'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `n` memories of one owner, alike enough to be SIMILAR_TO each other, enriched by `d`.
async fn enriched_memories(pool: &PgPool, owner: &str, n: i64) {
    sqlx::query(
        "INSERT INTO memories (owner_id, content) \
         SELECT $1, 'Alice moved the queue of project Atlas to Postgres, step ' || g \
         FROM generate_series(1, $2) g",
    )
    .bind(owner)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    let owner = owner.to_string();
    eventually(Duration::from_secs(60), "the memories are enriched", || {
        let (pool, owner) = (pool.clone(), owner.clone());
        async move {
            let sql = format!(
                "SELECT count(*) FROM memories WHERE owner_id = '{owner}' AND enriched_at IS NULL"
            );
            count(&pool, &sql).await == 0
        }
    })
    .await;
}

async fn similar_edges(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM memory_edges WHERE kind = 'SIMILAR_TO'",
    )
    .await
}

#[tokio::test]
async fn auto_takes_what_the_server_has_and_says_so_in_the_status_and_a_metric() {
    let db = TestDb::empty();
    let d = Daemon::builder(&db.url).ready().await;
    let pool = db.pool().await;
    let pgvector = has_pgvector(&pool).await;
    let expected = if pgvector { "pgvector" } else { "array" };

    let status = d.get_json("/v1/status").await;
    let vector = &status["vector"];
    assert_eq!(vector["backend"], expected, "{status}");
    if pgvector {
        assert_eq!(column_type(&pool).await, "vector");
        let indexes = vector["indexes"].as_array().unwrap();
        assert!(
            indexes
                .iter()
                .any(|i| i["dims"] == 384 && i["indexed_as"] == "vector"),
            "an HNSW index for the hash embedder's 384 dimensions: {vector}"
        );
        assert!(vector["pgvector_version"].is_string());
    } else {
        assert_eq!(column_type(&pool).await, "real[]");
        let reason = vector["reason"].as_str().unwrap();
        assert!(reason.contains("no pgvector extension"), "{reason}");
    }
    let (value, _) = d
        .metric(&format!(
            "memwarden_vector_backend{{backend=\"{expected}\"}}"
        ))
        .await;
    assert_eq!(value, 1.0);

    // The CLI says it too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["status", "--addr", &d.addr])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("vectors: {expected}")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Neighbours are found either way.
    enriched_memories(&pool, "alice", 30).await;
    assert!(
        similar_edges(&pool).await > 0,
        "SIMILAR_TO edges on {expected}"
    );
}

#[tokio::test]
async fn the_store_converts_to_pgvector_and_back_with_every_vector_kept() {
    let db = TestDb::empty();
    let pool = db.pool().await;
    {
        let d = Daemon::builder(&db.url)
            .config("[vector]\nbackend = \"array\"")
            .ready()
            .await;
        assert_eq!(d.get_json("/v1/status").await["vector"]["backend"], "array");
        enriched_memories(&pool, "alice", 40).await;
        d.quiet().await;
    }
    assert_eq!(column_type(&pool).await, "real[]");
    if !has_pgvector(&pool).await {
        crate::harness::notice("conversion to pgvector not tested: this server has no pgvector");
        return;
    }
    let vectors = "SELECT md5(string_agg(memory_id || ':' || embedding::real[]::text, ',' ORDER BY memory_id)) \
                   FROM memory_embeddings";
    let before: String = sqlx::query_scalar(vectors).fetch_one(&pool).await.unwrap();
    let edges_before = similar_edges(&pool).await;

    {
        let d = Daemon::builder(&db.url).ready().await;
        assert_eq!(
            d.get_json("/v1/status").await["vector"]["backend"],
            "pgvector"
        );
        assert_eq!(column_type(&pool).await, "vector");
        let after: String = sqlx::query_scalar(vectors).fetch_one(&pool).await.unwrap();
        assert_eq!(after, before, "every vector, every component");
        // New memories find the old ones through the index.
        enriched_memories(&pool, "alice", 10).await;
        assert!(similar_edges(&pool).await > edges_before);
        d.quiet().await;
    }
    let edges = similar_edges(&pool).await;
    let before: String = sqlx::query_scalar(vectors).fetch_one(&pool).await.unwrap();
    let d = Daemon::builder(&db.url)
        .config("[vector]\nbackend = \"array\"")
        .ready()
        .await;
    assert_eq!(column_type(&pool).await, "real[]");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'memory_embeddings_hnsw_%'"
        )
        .await,
        0,
        "no HNSW index is left on an array column"
    );
    let after: String = sqlx::query_scalar(vectors).fetch_one(&pool).await.unwrap();
    assert_eq!(after, before);
    enriched_memories(&pool, "alice", 5).await;
    assert!(similar_edges(&pool).await > edges);
    d.quiet().await;
}

#[tokio::test]
async fn a_size_above_what_vector_indexes_is_indexed_as_halfvec() {
    let db = TestDb::empty();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .config("[embedding]\ndimensions = 3072")
        .ready()
        .await;
    if !has_pgvector(&pool).await {
        assert_eq!(d.get_json("/v1/status").await["vector"]["backend"], "array");
        return;
    }
    let status = d.get_json("/v1/status").await;
    let indexes = status["vector"]["indexes"].as_array().unwrap().clone();
    assert!(
        indexes
            .iter()
            .any(|i| i["dims"] == 3072 && i["indexed_as"] == "halfvec"),
        "{status}"
    );
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_embeddings_hnsw_3072'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        def.contains("halfvec(3072)") && def.contains("halfvec_cosine_ops"),
        "{def}"
    );
    enriched_memories(&pool, "alice", 20).await;
    assert!(similar_edges(&pool).await > 0);
}

#[test]
fn a_size_above_what_hnsw_indexes_is_refused_for_pgvector_at_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memwarden.toml");
    for (config, ok) in [
        (
            "[vector]\nbackend = \"pgvector\"\n[embedding]\ndimensions = 4096\n",
            false,
        ),
        (
            "[vector]\nbackend = \"pgvector\"\n[embedding]\ndimensions = 3072\n",
            true,
        ),
        // auto takes arrays for such a size; nothing to refuse.
        (
            "[vector]\nbackend = \"auto\"\n[embedding]\ndimensions = 4096\n",
            true,
        ),
        ("[vector]\nbackend = \"qdrant\"\n", false),
    ] {
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .args(["config", "check", "--config"])
            .arg(&path)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{config}: {err}");
        if !ok {
            assert!(err.contains("vector.backend"), "{err}");
        }
        if config.contains("4096") && !ok {
            assert!(err.contains("4000") && err.contains("halfvec"), "{err}");
        }
    }
}

#[tokio::test]
async fn a_configured_pgvector_the_server_cannot_give_fails_at_start_with_the_reason() {
    let db = TestDb::empty();
    let pool = db.pool().await;
    let (url, why) = if has_pgvector(&pool).await {
        // The server has pgvector but this role may not install it (it is not a trusted
        // extension): the case of a managed database without the extension enabled.
        let role = format!("mw_plain_{}", std::process::id());
        for sql in [
            format!("DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"),
            format!("GRANT CREATE ON DATABASE {} TO {role}", db.name),
        ] {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        (
            db.url.replacen("postgres@", &format!("{role}@"), 1),
            "could not install it",
        )
    } else {
        (db.url.clone(), "no pgvector extension")
    };
    let mut d = Daemon::builder(&url)
        .config("[vector]\nbackend = \"pgvector\"")
        .spawn();
    let status = d
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the daemon gives up");
    assert!(!status.success());
    let logs = d.logs();
    assert!(
        logs.contains("vector.backend = \\\"pgvector\\\"")
            || logs.contains("vector.backend = \"pgvector\""),
        "{logs}"
    );
    assert!(logs.contains(why), "{logs}");

    // With auto, the same server and role start on arrays, and say why.
    let d = Daemon::builder(&url).ready().await;
    let vector: Value = d.get_json("/v1/status").await["vector"].clone();
    assert_eq!(vector["backend"], "array");
    assert!(vector["reason"].as_str().unwrap().contains(why), "{vector}");
}
