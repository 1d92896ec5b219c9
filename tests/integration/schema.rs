//! memwarden's own schema: an install from before 2026-12-02 (memory store in `public`) moves
//! into it with nothing lost, and a fresh install lives beside another application's tables of
//! the same names in `public` without touching them.

use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::harness::{count, eventually, fixtures, Daemon, TestDb};

/// Tables of the memory store, which lived in `public` before the move.
const STORE_TABLES: [&str; 9] = [
    "memories",
    "memory_embeddings",
    "memory_entities",
    "memory_edges",
    "patterns",
    "conversations",
    "conversation_entries",
    "blobs",
    "attachments",
];

/// A pool with the server's default search path, as an application that knows nothing of
/// memwarden connects.
async fn plain_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connecting")
}

/// Every row, whatever its column order and without later columns: only a lost value differs.
async fn fingerprint(pool: &PgPool, table: &str) -> (i64, String) {
    const ADDED: &str = "'summary', 'tag_prefixes', 'enriched', 'processed', 'expires_at', \
        'memory_config_project', 'memory_config_id'";
    sqlx::query_as(&format!(
        "SELECT count(*), coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '') \
         FROM (SELECT to_jsonb(t) - ARRAY[{ADDED}] AS r FROM {table} t) x"
    ))
    .fetch_one(pool)
    .await
    .expect(table)
}

/// What lives in a schema besides an extension's objects: relations, functions, triggers.
async fn objects_in(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind || ' ' || name FROM ( \
           SELECT 'relation' AS kind, c.relname::text AS name, c.oid, 'pg_class'::regclass AS cls \
             FROM pg_class c WHERE c.relnamespace = $1::regnamespace \
           UNION ALL SELECT 'function', p.proname::text, p.oid, 'pg_proc'::regclass \
             FROM pg_proc p WHERE p.pronamespace = $1::regnamespace \
           UNION ALL SELECT 'type', t.typname::text, t.oid, 'pg_type'::regclass FROM pg_type t \
             WHERE t.typnamespace = $1::regnamespace AND t.typrelid = 0 AND t.typelem = 0 \
         ) o WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.cls \
                               AND d.objid = o.oid AND d.deptype = 'e') \
         ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn index_names(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1")
        .bind(schema)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// An install as `main` made it before the move: the old migrations, run with the server's
/// default search path, and a store filled through its triggers.
async fn old_install(pool: &PgPool, blobs: &std::path::Path) -> Vec<uuid::Uuid> {
    sqlx::migrate!("./tests/fixtures/migrations-before-2026-12-02")
        .run(pool)
        .await
        .expect("the migrations from before 2026-12-02");
    let live: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO memories (owner_id, memory_type, content, tags) \
         SELECT 'alice', 'Decision', 'Alice chose Postgres for project Atlas, note ' || g, '{db}' \
         FROM generate_series(1, 5) g RETURNING id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memories (owner_id, content, deleted_at) \
         VALUES ('alice', 'forgotten', now() - interval '40 days')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memory_embeddings (memory_id, model, dims, embedding, content_hash) \
         SELECT id, 'hash-v1', 2, '{0.6,0.8}', content_hash FROM memories WHERE id = $1",
    )
    .bind(live[0])
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memory_entities (memory_id, category, value, slug) VALUES ($1, 'person', 'Alice', 'alice')",
    )
    .bind(live[0])
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO memory_edges (src_id, dst_id, kind) VALUES ($1, $2, 'PRECEDED_BY')")
        .bind(live[1])
        .bind(live[0])
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO patterns (memory_type, terms, observations) VALUES ('Decision', '{postgres}', 3)")
        .execute(pool)
        .await
        .unwrap();
    let conversation = fixtures::conversation(pool, None, 3).await;
    let blob = fixtures::blob(pool, blobs, "k1", b"attachment bytes", 1).await;
    fixtures::attachment(pool, blob, Some(conversation), None).await;
    live
}

#[tokio::test]
async fn an_install_from_before_the_move_keeps_every_row_trigger_index_and_job() {
    let db = TestDb::empty();
    let old = plain_pool(&db.url).await;
    let blobs = tempfile::tempdir().unwrap();
    let live = old_install(&old, blobs.path()).await;

    let mut before = Vec::new();
    for table in STORE_TABLES {
        before.push(fingerprint(&old, &format!("public.{table}")).await);
    }
    let mut indexes_before = index_names(&old, "public").await;
    indexes_before.retain(|i| i != "_sqlx_migrations_pkey");
    let queued: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM memwarden.jobs WHERE kind = 'enrichment' AND status = 'available' ORDER BY id",
    )
    .fetch_all(&old)
    .await
    .unwrap();
    assert_eq!(
        queued.len(),
        live.len(),
        "the old triggers queued each memory"
    );
    old.close().await;

    // What the daemon runs as it starts (run before it here, so the rows are compared
    // before its workers enrich them).
    let pool = db.pool().await;
    memwarden::db::migrate(&pool, &memwarden::config::Schema::default())
        .await
        .expect("moving the old install");

    for (table, want) in STORE_TABLES.iter().zip(&before) {
        let got = fingerprint(&pool, &format!("memwarden.{table}")).await;
        assert_eq!(&got, want, "{table}: every row, every value");
    }
    assert_eq!(
        objects_in(&pool, "public").await,
        Vec::<String>::new(),
        "nothing of memwarden's is left in public"
    );
    let indexes_after = index_names(&pool, "memwarden").await;
    for index in &indexes_before {
        assert!(
            indexes_after.contains(index),
            "index {index} moved: {indexes_after:?}"
        );
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM memwarden._sqlx_migrations ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<i64> = memwarden::migrate::MIGRATOR
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(
        versions, expected,
        "the move records what it amounts to, then the rest ran"
    );

    // The jobs queued before the move run after it.
    let d = Daemon::builder(&db.url)
        .config(&format!("[blobs]\ndir = \"{}\"", blobs.path().display()))
        .ready()
        .await;
    eventually(
        Duration::from_secs(30),
        "the old install's queued enrichments succeed",
        || {
            let (pool, queued) = (pool.clone(), queued.clone());
            async move {
                let done: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'",
                )
                .bind(&queued)
                .fetch_one(&pool)
                .await
                .unwrap();
                done == queued.len() as i64
            }
        },
    )
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memories WHERE enriched_at IS NOT NULL"
        )
        .await,
        live.len() as i64
    );

    // The triggers moved with their table and still work, whoever writes.
    let plain = plain_pool(&db.url).await;
    let fresh: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO memwarden.memories (owner_id, content) VALUES ('bob', 'Bob uses Rust') RETURNING id",
    )
    .fetch_one(&plain)
    .await
    .unwrap();
    let hashed: bool = sqlx::query_scalar(
        "SELECT content_hash = encode(sha256(convert_to(content, 'UTF8')), 'hex') FROM memwarden.memories WHERE id = $1",
    )
    .bind(fresh)
    .fetch_one(&plain)
    .await
    .unwrap();
    assert!(hashed, "the content hash is kept");
    eventually(Duration::from_secs(20), "the new memory is enriched", || {
        let pool = pool.clone();
        async move {
            count(
                &pool,
                &format!("SELECT count(*) FROM memories WHERE id = '{fresh}' AND enriched_at IS NOT NULL"),
            )
            .await
                == 1
        }
    })
    .await;
    sqlx::query("UPDATE memwarden.memories SET content = 'Bob uses Go now' WHERE id = $1")
        .bind(fresh)
        .execute(&plain)
        .await
        .unwrap();
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM memories WHERE id = '{fresh}' AND enriched_at IS NULL")
        )
        .await,
        1,
        "a content change marks the memory for enrichment again"
    );
    let inbound = format!(
        "SELECT count(*) FROM memory_edges WHERE dst_id = '{}'",
        live[0]
    );
    assert!(count(&pool, &inbound).await > 0);
    sqlx::query("DELETE FROM memwarden.memories WHERE id = $1")
        .bind(live[0])
        .execute(&plain)
        .await
        .unwrap();
    assert_eq!(
        count(&pool, &inbound).await,
        0,
        "a hard delete takes inbound edges"
    );

    // Starting again is a no-op.
    d.quiet().await;
    drop(d);
    memwarden::db::migrate(&pool, &memwarden::config::Schema::default())
        .await
        .expect("migrating again");
    assert_eq!(objects_in(&pool, "public").await, Vec::<String>::new());
}

#[tokio::test]
async fn an_install_too_old_to_move_is_refused_with_what_to_do() {
    let db = TestDb::empty();
    let old = plain_pool(&db.url).await;
    let blobs = tempfile::tempdir().unwrap();
    old_install(&old, blobs.path()).await;
    sqlx::query("DELETE FROM public._sqlx_migrations WHERE version = 7")
        .execute(&old)
        .await
        .unwrap();
    let pool = db.pool().await;
    let err = memwarden::db::migrate(&pool, &memwarden::config::Schema::default())
        .await
        .expect_err("an install at migration 6 cannot be moved");
    let message = err.to_string();
    assert!(
        message.contains("migration 6") && message.contains("from migration 7"),
        "{message}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.memories").await,
        6,
        "nothing moved"
    );
}

#[tokio::test]
async fn installs_beside_another_applications_tables_of_the_same_names_and_leaves_them_alone() {
    let db = TestDb::empty();
    let other = plain_pool(&db.url).await;
    for statement in [
        "CREATE TABLE memories (id bigserial PRIMARY KEY, body text NOT NULL, created timestamptz DEFAULT now())",
        "CREATE TABLE conversations (id serial PRIMARY KEY, title text)",
        "CREATE TABLE attachments (id serial PRIMARY KEY, path text, deleted_at timestamptz)",
        // Another sqlx application's migration records.
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
         checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
        "INSERT INTO _sqlx_migrations VALUES (20240101, 'theirs', now(), true, '\\x00', 1)",
        "INSERT INTO memories (body) SELECT 'theirs ' || g FROM generate_series(1, 50) g",
        "INSERT INTO conversations (title) VALUES ('their chat')",
        // Soft-deleted long ago: eviction must not take it.
        "INSERT INTO attachments (path, deleted_at) VALUES ('/theirs', now() - interval '400 days')",
    ] {
        sqlx::query(statement).execute(&other).await.expect(statement);
    }
    let tables = [
        "memories",
        "conversations",
        "attachments",
        "_sqlx_migrations",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(fingerprint(&other, &format!("public.{table}")).await);
    }
    let public_before = objects_in(&other, "public").await;

    let blobs = tempfile::tempdir().unwrap();
    let d = Daemon::builder(&db.url)
        .config(&format!("[blobs]\ndir = \"{}\"", blobs.path().display()))
        .ready()
        .await;
    let pool = db.pool().await;
    let ours: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO memories (owner_id, content) VALUES ('alice', 'Alice uses Postgres') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "memwarden's memory is enriched", || {
        let pool = pool.clone();
        async move {
            count(
                &pool,
                &format!("SELECT count(*) FROM memwarden.memories WHERE id = '{ours}' AND enriched_at IS NOT NULL"),
            )
            .await
                == 1
        }
    })
    .await;
    fixtures::conversation(&pool, Some("40 days"), 2).await;
    let r = d
        .post(
            "/v1/admin/evict",
            json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations", "attachments"], "justification": "schema test"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memwarden.conversations").await,
        0
    );

    for (table, want) in tables.iter().zip(&before) {
        assert_eq!(
            &fingerprint(&other, &format!("public.{table}")).await,
            want,
            "the other application's {table} is untouched"
        );
    }
    assert_eq!(
        objects_in(&other, "public").await,
        public_before,
        "nothing added to public"
    );
    d.quiet().await;
}
