-- GoodMem's RetrieveMemory log policies and the log rows they cause (docs/operations.md,
-- "RetrieveMemory log policies"). memwarden owns the policy store and the rows' retention;
-- the retrieval server asks `matching_retrieve_log_policies` which active policies match a
-- request and writes its log rows into `retrieve_memory_logs`.

-- Immutable once written: only the tombstone columns are ever set, once, by a delete.
CREATE TABLE retrieve_memory_log_policies (
    policy_id     uuid PRIMARY KEY,
    display_name  text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    description   text CHECK (length(description) <= 4096),
    -- {"matchAll": true} or {"matchAll": false, "anyOf": [clause, ...]}; each clause holds
    -- only the dimensions it names: requestorUserIds, apiKeyIds, spaceIds (arrays of uuid
    -- strings), apiKeyLabelSelectors, spaceLabelSelectors (objects of strings).
    condition     jsonb       NOT NULL,
    active_from   timestamptz NOT NULL,
    active_until  timestamptz CHECK (active_until > active_from),
    labels        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    created_by_id text        NOT NULL,
    updated_by_id text        NOT NULL,
    deleted_at    timestamptz,
    deleted_by_id text,
    delete_reason text,
    CHECK ((deleted_at IS NULL) = (deleted_by_id IS NULL))
);
CREATE INDEX retrieve_memory_log_policies_live_idx
    ON retrieve_memory_log_policies (active_from) WHERE deleted_at IS NULL;

-- One row per logged RetrieveMemory call, written by the retrieval server. `source` says why
-- it was logged; `policy_ids` names the policies that matched (empty for CALLER_OPT_IN).
CREATE TABLE retrieve_memory_logs (
    log_id            uuid PRIMARY KEY DEFAULT uuid_v7(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    source            text        NOT NULL
        CHECK (source IN ('CALLER_OPT_IN', 'POLICY', 'CALLER_OPT_IN_AND_POLICY')),
    policy_ids        uuid[]      NOT NULL DEFAULT '{}',
    requestor_user_id uuid,
    api_key_id        uuid,
    space_ids         uuid[]      NOT NULL DEFAULT '{}',
    request           jsonb       NOT NULL,
    response          jsonb,
    error             text,
    CHECK ((source = 'CALLER_OPT_IN') = (cardinality(policy_ids) = 0))
);
-- The retention job's scan: oldest rows first.
CREATE INDEX retrieve_memory_logs_created_idx ON retrieve_memory_logs (created_at);

-- The live policies whose window holds `at` and whose condition matches the request: matchAll,
-- or one clause of anyOf all of whose dimensions match (an id list matches when it holds the
-- request's id, or for spaceIds one of its spaces; a label selector when the key's labels, or
-- one space's labels, contain every pair of it). Oldest policy first.
CREATE FUNCTION matching_retrieve_log_policies(
    requestor_user_id uuid,
    api_key_id        uuid,
    space_ids         uuid[] DEFAULT '{}',
    api_key_labels    jsonb  DEFAULT '{}',
    space_labels      jsonb  DEFAULT '[]',
    at                timestamptz DEFAULT now()
) RETURNS TABLE (policy_id uuid)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT p.policy_id
      FROM retrieve_memory_log_policies p
     WHERE p.deleted_at IS NULL
       AND p.active_from <= $6
       AND (p.active_until IS NULL OR $6 < p.active_until)
       AND (coalesce((p.condition ->> 'matchAll')::boolean, false)
            OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(coalesce(p.condition -> 'anyOf', '[]')) c (clause)
                 WHERE (NOT c.clause ? 'requestorUserIds'
                        OR coalesce(c.clause -> 'requestorUserIds' ? $1::text, false))
                   AND (NOT c.clause ? 'apiKeyIds'
                        OR coalesce(c.clause -> 'apiKeyIds' ? $2::text, false))
                   AND (NOT c.clause ? 'spaceIds'
                        OR EXISTS (SELECT 1 FROM unnest(coalesce($3, '{}')) s (id)
                                    WHERE c.clause -> 'spaceIds' ? s.id::text))
                   AND (NOT c.clause ? 'apiKeyLabelSelectors'
                        OR coalesce($4 @> (c.clause -> 'apiKeyLabelSelectors'), false))
                   AND (NOT c.clause ? 'spaceLabelSelectors'
                        OR EXISTS (SELECT 1 FROM jsonb_array_elements(
                                       CASE WHEN jsonb_typeof($5) = 'array' THEN $5 ELSE '[]' END) l (labels)
                                    WHERE l.labels @> (c.clause -> 'spaceLabelSelectors')))))
     ORDER BY p.created_at, p.policy_id
$$;
