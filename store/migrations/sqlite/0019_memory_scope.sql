-- Agent and global memory contexts (issue 20): a namespace is either its
-- organisation's shared knowledge (agent NULL, every namespace created
-- before this migration) or the memory of one agent of that organisation
-- (agent = the agent's name). The declaration in `spec` says the same; the
-- column lets listings filter by agent through the index below.
ALTER TABLE memory_namespaces ADD COLUMN agent TEXT;
CREATE INDEX memory_namespaces_by_agent ON memory_namespaces (org, agent, name);
