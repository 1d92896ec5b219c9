-- Eviction's scan of soft-deleted memories by age; live rows are not in it.
CREATE INDEX memories_deleted_idx ON public.memories (deleted_at) WHERE deleted_at IS NOT NULL;
