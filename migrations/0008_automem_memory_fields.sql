-- What AutoMem's clients read on a memory besides its metadata (automem/api/memory.py and its
-- enrichment): `summary`, written by enrichment; `tag_prefixes`, `enriched` and `processed`,
-- which are generated, so they agree with the row however it was written.
--
-- tag_prefixes: every tag lowercased and split on ':' or '/', each leading run of parts joined
-- by ':' ("Project/Alpha:API" gives project, project:alpha, project:alpha:api), each prefix
-- once, in the order first met, as AutoMem's _compute_tag_prefixes.
CREATE FUNCTION tag_prefixes_of(tags text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN ARRAY(
    SELECT prefix FROM (
        SELECT array_to_string(s.parts[1:n], ':') AS prefix, t.o, n
        FROM unnest(tags) WITH ORDINALITY AS t(tag, o)
        CROSS JOIN LATERAL (
            SELECT array_remove(regexp_split_to_array(lower(btrim(t.tag)), '[:/]'), '') AS parts) s
        CROSS JOIN LATERAL generate_series(1, cardinality(s.parts)) AS n
    ) p
    GROUP BY prefix
    ORDER BY min(o * 100000 + n)
);

-- Adding stored generated columns rewrites the table once, under an exclusive lock, so on a
-- large store the upgrade wants a quiet moment; `summary` alone would not.
ALTER TABLE memories
    ADD COLUMN summary text,
    ADD COLUMN tag_prefixes text[] NOT NULL GENERATED ALWAYS AS (tag_prefixes_of(tags)) STORED,
    -- Enriched for its current content (a content change clears enriched_at).
    ADD COLUMN enriched boolean NOT NULL GENERATED ALWAYS AS (enriched_at IS NOT NULL) STORED,
    -- Enrichment has run at least once, whatever the content since.
    ADD COLUMN processed boolean NOT NULL GENERATED ALWAYS AS (enrichment_version > 0) STORED;
