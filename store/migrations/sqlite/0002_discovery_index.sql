-- Free-text discovery ranks every row that matches the text and checks each
-- one against the filters on the agent row (deleted, role, org, trust) and
-- orders ties by id. Reading those from the table itself means one wide row
-- (the card JSON) per match; this index holds exactly those small columns in
-- row order, so the per-match check is one narrow index lookup and the card
-- is read only for the rows of the page. It grows at its end as agents are
-- registered, so it costs little on insert.
CREATE INDEX agents_discovery ON agents (pk, deleted_at, role, org, trust_rank, id);
