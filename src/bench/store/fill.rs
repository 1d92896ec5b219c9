//! The store the bench measures: `size` memories written with plain SQL, as a memory service
//! writes them, a tenth of them one owner's.

use anyhow::Result;
use memwarden_jobs::enrichment::ENRICHMENT_VERSION;
use sqlx::PgPool;

use super::LARGE_OWNER;
use crate::bench::support::insert_without_jobs;

/// `size` memories, a tenth of them the large owner's, marked enriched, without jobs; the
/// number of the large owner's.
pub(super) async fn fill(pool: &PgPool, size: i64) -> Result<i64> {
    let large = (size / 10).max(1);
    // Words drawn per memory so that the hash embeddings differ, and some are near others.
    let insert = sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at, enriched_at, enrichment_version) \
         SELECT CASE WHEN g <= $2 THEN $3 ELSE 'owner-' || (g / 100) END, \
                (ARRAY['Decision','Preference','Insight','Context','Pattern'])[1 + g % 5], \
                'Memory ' || g || ': ' || w[1 + (g * 7) % 40] || ' ' || w[1 + (g * 13) % 40] || ' ' || \
                w[1 + (g * 31) % 40] || ' with ' || p[1 + g % 8] || ', about ' || w[1 + (g / 40) % 40] || \
                ' and ' || w[1 + (g / 1600) % 40], \
                now() - (($1 - g) || ' seconds')::interval, now(), $4 \
         FROM generate_series(1, $1) g, \
              (SELECT ARRAY['postgres','queue','rust','deploy','latency','index','vector','owner', \
                            'memory','schema','replica','backup','kafka','redis','grafana','alert', \
                            'budget','roadmap','hiring','design','review','incident','pager','cost', \
                            'tenant','billing','search','embedding','model','prompt','agent','tool', \
                            'python','kubernetes','terraform','ci','release','feature','bug','test'] AS w, \
                      ARRAY['Alice Walker','Bob Chen','Carol Diaz','Dan Okafor','Eve Martin', \
                            'Frank Ito','Grace Kim','Heidi Novak'] AS p) words",
    )
    .bind(size)
    .bind(large)
    .bind(LARGE_OWNER)
    .bind(ENRICHMENT_VERSION);
    insert_without_jobs(pool, insert).await?;
    Ok(large)
}
