-- memwarden keeps its own tables in their own schema, so it can share a database with the
-- memory service without clashing.
CREATE SCHEMA IF NOT EXISTS memwarden;
