-- When an attachment that no conversation links expires (Memory Service's upload lifetime).
-- The admin API lists an attachment past it as `expired`. A nullable column without a default
-- is a catalog change only: no table rewrite, however many attachments there are.
ALTER TABLE attachments ADD COLUMN expires_at timestamptz;
